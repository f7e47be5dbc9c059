// The CUDA emulator's cuDNN: the legacy (cuDNN 9) 2-d convolution entry points, exported from
// `lamina.backend._cuda_emu` with the ABI of libcudnn's, so that a caller binding them with dlsym
// from this module's file runs its cuDNN code path on machines without a GPU (CI).
//
// Written from cuDNN's header (cudnn_graph_v9.h, cudnn_ops_v9.h, cudnn_cnn_v9.h) and its API
// documentation, without including them (CI has no cuDNN): opaque handles and descriptors are
// pointers to this file's structs, enums are int. What it models, so that a caller's misreading
// of the API shows in tests:
//  - the statuses the real library returns for bad arguments (BAD_PARAM) and for what it cannot
//    run (NOT_SUPPORTED), checked before anything is computed;
//  - dims always given as (n, c, h, w) / (k, c, h, w); the format only decides the memory layout
//    (NCHW, NHWC; filters NCHW = KCRS, NHWC = KRSC); grouped convolutions (x's channels = the
//    filter's c * groupCount); CONVOLUTION flips the filter, CROSS_CORRELATION does not;
//  - out = alpha * result + beta * out, where beta == 0 does not read out (it may hold NaN);
//    alpha and beta point to float (FLOAT and BFLOAT16 data); sums in double, stored as float
//    (bfloat16 rounded to nearest even, NaN kept);
//  - the algorithm queries (_v7) list every algorithm of the enum, those the emulator runs first
//    with status SUCCESS (forward: IMPLICIT_PRECOMP_GEMM, which needs a workspace, then
//    IMPLICIT_GEMM, which does not; backward data / filter: the NON_DETERMINISTIC ALGO_0 first,
//    then the deterministic ALGO_1, which needs a workspace), the rest with NOT_SUPPORTED;
//  - each convolution checks it got the workspace its algorithm needs and fills that workspace
//    with NaN bytes before and after it runs (on a device it is scratch memory the kernels
//    overwrite), so a workspace that aliases an input or the output shows.
// A convolution runs on the handle's stream: at once (LAMINA_CUDA_EMULATOR_STREAMS=sync, the
// default), or queued there (lazy; the descriptors copied and alpha, beta read at the call, the
// data read and written when it runs).
// LAMINA_CUDA_EMULATOR_SKIP_KERNELS=1: the calls check their arguments, count, and compute nothing.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

namespace emu {
bool skip_kernels();      // emu.cpp: LAMINA_CUDA_EMULATOR_SKIP_KERNELS
void count_cudnn_call();  // emu.cpp: ++g_stats.cudnn_calls (lamina_emu_stats)
// emu.cpp: runs work now (LAMINA_CUDA_EMULATOR_STREAMS=sync) or queues it on stream (lazy)
void enqueue_work(void* stream, std::function<void()> work);
}  // namespace emu

#define LAMINA_CUDNN_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// cudnnStatus_t (cudnn_graph_v9.h)
constexpr int kSuccess = 0, kBadParam = 2000, kNotSupported = 3000;
// cudnnDataType_t
constexpr int kFloat = 0, kBFloat16 = 9, kLastDataType = 21;
// cudnnTensorFormat_t
constexpr int kNCHW = 0, kNHWC = 1, kNCHWVectC = 2;
// cudnnConvolutionMode_t
constexpr int kConvolution = 0, kCrossCorrelation = 1;
// cudnnMathType_t: CUDNN_DEFAULT_MATH .. CUDNN_FMA_MATH
constexpr int kLastMathType = 3;
// cudnnDeterminism_t
constexpr int kNonDeterministic = 0, kDeterministic = 1;
// cudnnConvolutionFwdAlgo_t
constexpr int kFwdImplicitGemm = 0, kFwdImplicitPrecompGemm = 1, kFwdAlgoCount = 8;
// cudnnConvolutionBwdDataAlgo_t / cudnnConvolutionBwdFilterAlgo_t
constexpr int kBwdAlgo0 = 0, kBwdAlgo1 = 1, kBwdDataAlgoCount = 6, kBwdFilterAlgoCount = 7;

constexpr size_t kAlign = 256;
constexpr long long kMaxElements = (1LL << 31) - 1;  // "2 Giga-elements" (cudnnSetTensor4dDescriptor)

// Each object starts with its own tag, so a descriptor of the wrong kind, or one never set, is a
// BAD_PARAM rather than a misread.
enum Tag : uint32_t {
  kHandleTag = 0x444e4e48,
  kTensorTag = 0x444e4e54,
  kFilterTag = 0x444e4e46,
  kConvTag = 0x444e4e43,
};

struct Handle {
  uint32_t tag = kHandleTag;
  void* stream = nullptr;  // cudaStream_t
};
struct TensorDesc {
  uint32_t tag = kTensorTag;
  bool set = false;
  int format = 0, dtype = 0, n = 0, c = 0, h = 0, w = 0;
};
struct FilterDesc {
  uint32_t tag = kFilterTag;
  bool set = false;
  int format = 0, dtype = 0, k = 0, c = 0, h = 0, w = 0;
};
struct ConvDesc {
  uint32_t tag = kConvTag;
  bool set = false;  // by cudnnSetConvolution2dDescriptor; group count and math type have defaults
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1, mode = kCrossCorrelation, compute = kFloat;
  int groups = 1, math = 0;
};

// cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t: the three share this layout.
struct AlgoPerf {
  int algo;
  int status;
  float time;
  size_t memory;
  int determinism;
  int mathType;
  int reserved[3];
};
static_assert(sizeof(AlgoPerf) == 48 && offsetof(AlgoPerf, memory) == 16 && offsetof(AlgoPerf, determinism) == 24,
              "cuDNN's perf struct layout");

template <class T>
const T* as(const void* p, uint32_t tag) {
  const T* d = static_cast<const T*>(p);
  return d && d->tag == tag ? d : nullptr;
}
const Handle* handle_of(const void* p) { return as<Handle>(p, kHandleTag); }
const TensorDesc* tensor_of(const void* p) {
  const TensorDesc* d = as<TensorDesc>(p, kTensorTag);
  return d && d->set ? d : nullptr;
}
const FilterDesc* filter_of(const void* p) {
  const FilterDesc* d = as<FilterDesc>(p, kFilterTag);
  return d && d->set ? d : nullptr;
}
const ConvDesc* conv_of(const void* p) {
  const ConvDesc* d = as<ConvDesc>(p, kConvTag);
  return d && d->set ? d : nullptr;
}

bool known_data_type(int t) { return t >= 0 && t <= kLastDataType; }
bool known_format(int f) { return f == kNCHW || f == kNHWC || f == kNCHWVectC; }

// The checks cudnnSetTensor4dDescriptor and cudnnSetFilter4dDescriptor share: unknown enums and
// non-positive dims are BAD_PARAM; what the emulator does not run (NCHW_VECT_C, data types other
// than FLOAT and BFLOAT16, more than 2^31-1 elements) is NOT_SUPPORTED.
int check_4d(int format, int dtype, int a, int b, int c, int d) {
  if (!known_format(format) || !known_data_type(dtype)) return kBadParam;
  if (a <= 0 || b <= 0 || c <= 0 || d <= 0) return kBadParam;
  if (format == kNCHWVectC) return kNotSupported;
  if (dtype != kFloat && dtype != kBFloat16) return kNotSupported;
  if ((long long)a * b * c * d > kMaxElements) return kNotSupported;
  return kSuccess;
}

int out_size(int in, int pad, int filter, int dil, int stride) {
  return (in + 2 * pad - ((filter - 1) * dil + 1)) / stride + 1;
}

// One convolution's geometry, checked: x (n, c, h, w), filter (k, cg, r, s), y (n, k, oh, ow).
struct Geom {
  const TensorDesc* x;
  const FilterDesc* f;
  const ConvDesc* conv;
  const TensorDesc* y;
  int n, c, h, w, k, cg, r, s, groups, oh, ow;
};

// x, filter and conv alone (cudnnGetConvolution2dForwardOutputDim's checks): the filter's input
// channels times the group count must be x's channels, and the dilated filter must fit the padded
// input.
int check_input(const void* xd, const void* fd, const void* cd, Geom& g) {
  g.x = tensor_of(xd);
  g.f = filter_of(fd);
  g.conv = conv_of(cd);
  if (!g.x || !g.f || !g.conv) return kBadParam;
  g.n = g.x->n, g.c = g.x->c, g.h = g.x->h, g.w = g.x->w;
  g.k = g.f->k, g.cg = g.f->c, g.r = g.f->h, g.s = g.f->w;
  g.groups = g.conv->groups;
  if ((long long)g.cg * g.groups != g.c) return kBadParam;
  const int eff_r = (g.r - 1) * g.conv->dil_h + 1, eff_s = (g.s - 1) * g.conv->dil_w + 1;
  if (eff_r > g.h + 2 * g.conv->pad_h || eff_s > g.w + 2 * g.conv->pad_w) return kBadParam;
  g.oh = out_size(g.h, g.conv->pad_h, g.r, g.conv->dil_h, g.conv->u);
  g.ow = out_size(g.w, g.conv->pad_w, g.s, g.conv->dil_w, g.conv->v);
  return kSuccess;
}

// The whole problem, as the convolution functions, their workspace-size and algorithm queries
// check it: x, filter and y of one data type; k a multiple of the group count; y's n and c those
// of x and of the filter's k (BAD_PARAM), its h and w cudnnGetConvolution2dForwardOutputDim's
// (NOT_SUPPORTED, as cuDNN's documentation says); compute type FLOAT (the FLOAT and
// PSEUDO_BFLOAT16 configurations; anything else NOT_SUPPORTED).
int check_problem(const void* xd, const void* fd, const void* cd, const void* yd, Geom& g) {
  if (int st = check_input(xd, fd, cd, g)) return st;
  g.y = tensor_of(yd);
  if (!g.y) return kBadParam;
  if (g.x->dtype != g.f->dtype || g.y->dtype != g.x->dtype) return kBadParam;
  if (g.k % g.groups != 0) return kBadParam;
  if (g.y->n != g.n || g.y->c != g.k) return kBadParam;
  if (g.y->h != g.oh || g.y->w != g.ow) return kNotSupported;
  if (g.conv->compute != kFloat) return kNotSupported;
  return kSuccess;
}

size_t align_up(size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

enum class Op { kForward, kBackwardData, kBackwardFilter };

// The workspace an algorithm needs (bytes), or a status: BAD_PARAM for a value outside the enum,
// NOT_SUPPORTED for an algorithm the emulator does not run.
int workspace_bytes(Op op, int algo, const Geom& g, size_t* bytes) {
  const size_t taps = size_t(g.cg) * g.r * g.s;
  switch (op) {
    case Op::kForward:
      if (algo < 0 || algo >= kFwdAlgoCount) return kBadParam;
      if (algo == kFwdImplicitGemm) return *bytes = 0, kSuccess;
      // precomputed input offsets, one per filter tap and output column
      if (algo == kFwdImplicitPrecompGemm) return *bytes = align_up(sizeof(int) * taps * (size_t(g.ow) + 1)), kSuccess;
      return kNotSupported;
    case Op::kBackwardData:
      if (algo < 0 || algo >= kBwdDataAlgoCount) return kBadParam;
      if (algo == kBwdAlgo0) return *bytes = 0, kSuccess;
      // a float accumulator of dx, summed in a fixed order
      if (algo == kBwdAlgo1) return *bytes = align_up(sizeof(float) * size_t(g.n) * g.c * g.h * g.w), kSuccess;
      return kNotSupported;
    case Op::kBackwardFilter:
      if (algo < 0 || algo >= kBwdFilterAlgoCount) return kBadParam;
      if (algo == kBwdAlgo0) return *bytes = 0, kSuccess;
      // a float accumulator of dw per image
      if (algo == kBwdAlgo1) return *bytes = align_up(sizeof(float) * size_t(g.k) * taps * 2), kSuccess;
      return kNotSupported;
  }
  return kBadParam;
}

// The algorithms a _v7 query lists, in its order: those the emulator runs, then the rest of the
// enum with NOT_SUPPORTED.
std::vector<int> listed_algos(Op op) {
  switch (op) {
    case Op::kForward: return {kFwdImplicitPrecompGemm, kFwdImplicitGemm, 2, 3, 4, 5, 6, 7};
    case Op::kBackwardData: return {kBwdAlgo0, kBwdAlgo1, 2, 3, 4, 5};
    case Op::kBackwardFilter: return {kBwdAlgo0, kBwdAlgo1, 2, 3, 4, 5, 6};
  }
  return {};
}
int determinism_of(Op op, int algo) {
  if (op == Op::kForward) return kDeterministic;
  if (op == Op::kBackwardFilter && algo == 3) return kNonDeterministic;  // ALGO_3: like ALGO_0
  return algo == kBwdAlgo0 ? kNonDeterministic : kDeterministic;
}

int query_algos(Op op, const void* handle, const Geom& g, int requested, int* returned, void* results) {
  if (!handle_of(handle) || !returned || !results || requested <= 0) return kBadParam;
  AlgoPerf* out = static_cast<AlgoPerf*>(results);
  const std::vector<int> algos = listed_algos(op);
  int n = 0;
  for (int algo : algos) {
    if (n == requested) break;
    AlgoPerf p;
    std::memset(&p, 0, sizeof p);
    p.algo = algo;
    size_t bytes = 0;
    p.status = workspace_bytes(op, algo, g, &bytes);
    p.memory = p.status == kSuccess ? bytes : 0;
    p.time = -1.f;  // a heuristic's answer: nothing was timed
    p.determinism = determinism_of(op, algo);
    p.mathType = g.conv->math;
    out[n++] = p;
  }
  *returned = n;
  return kSuccess;
}

// ---- data --------------------------------------------------------------------------------------
float load(const void* p, int dtype, size_t i) {
  if (dtype == kBFloat16) {
    const uint32_t bits = uint32_t(static_cast<const uint16_t*>(p)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  return static_cast<const float*>(p)[i];
}
void store(void* p, int dtype, size_t i, float v) {
  if (dtype == kBFloat16) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
      bits |= 0x00400000u;  // NaN stays NaN
    else
      bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
    static_cast<uint16_t*>(p)[i] = uint16_t(bits >> 16);
    return;
  }
  static_cast<float*>(p)[i] = v;
}
// Offset of element (a, b, c, d) of a 4-d array of dims (A, B, C, D) given as (n, c, h, w) (or
// (k, c, r, s)): NCHW is row-major in that order, NHWC puts the second dim last.
size_t offset(int format, int B, int C, int D, int a, int b, int c, int d) {
  if (format == kNHWC) return ((size_t(a) * C + c) * D + d) * B + b;
  return ((size_t(a) * B + b) * C + c) * D + d;
}
// A tensor's or filter's values, as float in (n, c, h, w) / (k, c, r, s) row-major order.
std::vector<float> gather(const void* p, int format, int dtype, int A, int B, int C, int D) {
  std::vector<float> v(size_t(A) * B * C * D);
  size_t i = 0;
  for (int a = 0; a < A; ++a)
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c)
        for (int d = 0; d < D; ++d) v[i++] = load(p, dtype, offset(format, B, C, D, a, b, c, d));
  return v;
}
// out = alpha * acc + beta * out, acc in (n, c, h, w) row-major order; beta == 0 reads nothing.
void scatter(void* p, int format, int dtype, int A, int B, int C, int D, const std::vector<double>& acc, float alpha,
             float beta) {
  size_t i = 0;
  for (int a = 0; a < A; ++a)
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c)
        for (int d = 0; d < D; ++d) {
          const size_t o = offset(format, B, C, D, a, b, c, d);
          double v = double(alpha) * acc[i++];
          if (beta != 0.f) v += double(beta) * double(load(p, dtype, o));
          store(p, dtype, o, float(v));
        }
}

// Flat indices of the canonical (row-major) arrays: x / dx (n, c, h, w), the filter (k, cg, r, s),
// y / dy (n, k, oh, ow).
size_t ix(const Geom& g, int n, int c, int h, int w) { return ((size_t(n) * g.c + c) * g.h + h) * g.w + w; }
size_t iw_(const Geom& g, int k, int c, int r, int s) { return ((size_t(k) * g.cg + c) * g.r + r) * g.s + s; }
size_t iy(const Geom& g, int n, int k, int oh, int ow) { return ((size_t(n) * g.k + k) * g.oh + oh) * g.ow + ow; }

// Calls f(n, k, oh, ow, ci, c, ri, si, ih, iw) for every product term of the convolution: input
// channel ci (c within its group), filter tap (ri, si) as stored (CONVOLUTION flips the filter),
// input position (ih, iw) inside x.
template <class F>
void for_each_term(const Geom& g, F&& f) {
  const ConvDesc& cv = *g.conv;
  const int kg = g.k / g.groups;
  const bool flip = cv.mode == kConvolution;
  for (int n = 0; n < g.n; ++n)
    for (int k = 0; k < g.k; ++k) {
      const int grp = k / kg;
      for (int oh = 0; oh < g.oh; ++oh)
        for (int ow = 0; ow < g.ow; ++ow)
          for (int c = 0; c < g.cg; ++c)
            for (int r = 0; r < g.r; ++r) {
              const int ih = oh * cv.u - cv.pad_h + r * cv.dil_h;
              if (ih < 0 || ih >= g.h) continue;
              for (int s = 0; s < g.s; ++s) {
                const int iw = ow * cv.v - cv.pad_w + s * cv.dil_w;
                if (iw < 0 || iw >= g.w) continue;
                f(n, k, oh, ow, grp * g.cg + c, c, flip ? g.r - 1 - r : r, flip ? g.s - 1 - s : s, ih, iw);
              }
            }
    }
}

// The checks every convolution call makes after the problem's: handle, data pointers, scaling
// factors, algorithm, workspace.
int check_call(Op op, const void* handle, const Geom& g, const void* alpha, const void* beta, const void* a,
               const void* b, const void* out, int algo, const void* workspace, size_t workspace_bytes_given,
               size_t* needed) {
  if (!handle_of(handle) || !alpha || !beta || !a || !b || !out) return kBadParam;
  if (int st = workspace_bytes(op, algo, g, needed)) return st;
  if (*needed > 0 && (!workspace || workspace_bytes_given < *needed)) return kBadParam;
  return kSuccess;
}

void scribble(void* workspace, size_t bytes) {
  if (bytes) std::memset(workspace, 0xff, bytes);  // NaN bit patterns
}

// A convolution as it runs on its handle's stream (queued with LAMINA_CUDA_EMULATOR_STREAMS=lazy):
// the descriptors are copied and alpha and beta read at the call, the data read and written when
// it runs. a, b, out: x, w, y (forward); w, dy, dx (backward data); x, dy, dw (backward filter).
struct ConvJob {
  Op op;
  TensorDesc x, y;
  FilterDesc f;
  ConvDesc conv;
  Geom g;  // pointing to the copies above
  const void* a;
  const void* b;
  void* out;
  float alpha, beta;
  void* workspace;
  size_t needed;
};

void run_conv(const ConvJob& j) {
  const Geom& g = j.g;
  const int dt = g.x->dtype;
  scribble(j.workspace, j.needed);
  switch (j.op) {
    case Op::kForward: {
      const std::vector<float> xs = gather(j.a, g.x->format, dt, g.n, g.c, g.h, g.w);
      const std::vector<float> ws = gather(j.b, g.f->format, dt, g.k, g.cg, g.r, g.s);
      std::vector<double> acc(size_t(g.n) * g.k * g.oh * g.ow, 0.0);
      for_each_term(g, [&](int n, int k, int oh, int ow, int ci, int c, int r, int s, int ih, int iw) {
        acc[iy(g, n, k, oh, ow)] += double(xs[ix(g, n, ci, ih, iw)]) * double(ws[iw_(g, k, c, r, s)]);
      });
      scatter(j.out, g.y->format, dt, g.n, g.k, g.oh, g.ow, acc, j.alpha, j.beta);
      break;
    }
    case Op::kBackwardData: {
      const std::vector<float> ws = gather(j.a, g.f->format, dt, g.k, g.cg, g.r, g.s);
      const std::vector<float> dys = gather(j.b, g.y->format, dt, g.n, g.k, g.oh, g.ow);
      std::vector<double> acc(size_t(g.n) * g.c * g.h * g.w, 0.0);
      for_each_term(g, [&](int n, int k, int oh, int ow, int ci, int c, int r, int s, int ih, int iw) {
        acc[ix(g, n, ci, ih, iw)] += double(dys[iy(g, n, k, oh, ow)]) * double(ws[iw_(g, k, c, r, s)]);
      });
      scatter(j.out, g.x->format, dt, g.n, g.c, g.h, g.w, acc, j.alpha, j.beta);
      break;
    }
    case Op::kBackwardFilter: {
      const std::vector<float> xs = gather(j.a, g.x->format, dt, g.n, g.c, g.h, g.w);
      const std::vector<float> dys = gather(j.b, g.y->format, dt, g.n, g.k, g.oh, g.ow);
      std::vector<double> acc(size_t(g.k) * g.cg * g.r * g.s, 0.0);
      for_each_term(g, [&](int n, int k, int oh, int ow, int ci, int c, int r, int s, int ih, int iw) {
        acc[iw_(g, k, c, r, s)] += double(dys[iy(g, n, k, oh, ow)]) * double(xs[ix(g, n, ci, ih, iw)]);
      });
      scatter(j.out, g.f->format, dt, g.k, g.cg, g.r, g.s, acc, j.alpha, j.beta);
      break;
    }
  }
  scribble(j.workspace, j.needed);
}

// A checked call: counted, then run or queued on the handle's stream.
int queue_conv(Op op, const void* handle, const Geom& g, const void* alpha, const void* beta, const void* a,
               const void* b, void* out, void* workspace, size_t needed) {
  emu::count_cudnn_call();
  if (emu::skip_kernels()) return kSuccess;
  auto j = std::make_shared<ConvJob>();
  j->op = op;
  j->x = *g.x;
  j->y = *g.y;
  j->f = *g.f;
  j->conv = *g.conv;
  j->g = g;
  j->g.x = &j->x;
  j->g.y = &j->y;
  j->g.f = &j->f;
  j->g.conv = &j->conv;
  j->a = a;
  j->b = b;
  j->out = out;
  j->alpha = *static_cast<const float*>(alpha);
  j->beta = *static_cast<const float*>(beta);
  j->workspace = workspace;
  j->needed = needed;
  emu::enqueue_work(handle_of(handle)->stream, [j]() { run_conv(*j); });
  return kSuccess;
}

}  // namespace

// ---- library, handle -------------------------------------------------------------------------
LAMINA_CUDNN_EXPORT size_t cudnnGetVersion() { return 92400; }  // CUDNN_VERSION of the headers it follows (9.24.0)

LAMINA_CUDNN_EXPORT const char* cudnnGetErrorString(int status) {
  switch (status) {
    case 0: return "CUDNN_STATUS_SUCCESS";
    case 1001: return "CUDNN_STATUS_NOT_INITIALIZED";
    case 1002: return "CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH";
    case 1003: return "CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH";
    case 1004: return "CUDNN_STATUS_DEPRECATED";
    case 1005: return "CUDNN_STATUS_LICENSE_ERROR";
    case 1006: return "CUDNN_STATUS_RUNTIME_IN_PROGRESS";
    case 1007: return "CUDNN_STATUS_RUNTIME_FP_OVERFLOW";
    case 1008: return "CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED";
    case 2000: return "CUDNN_STATUS_BAD_PARAM";
    case 2001: return "CUDNN_STATUS_INVALID_VALUE";
    case 2002: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case 2003: return "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER";
    case 2004: return "CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED";
    case 2005: return "CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND";
    case 2006: return "CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT";
    case 2007: return "CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH";
    case 2008: return "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH";
    case 2009: return "CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES";
    case 2010: return "CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE";
    case 2011: return "CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH";
    case 2012: return "CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE";
    case 3000: return "CUDNN_STATUS_NOT_SUPPORTED";
    case 3001: return "CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN";
    case 3002: return "CUDNN_STATUS_NOT_SUPPORTED_SHAPE";
    case 3003: return "CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE";
    case 3004: return "CUDNN_STATUS_NOT_SUPPORTED_LAYOUT";
    case 3005: return "CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER";
    case 3006: return "CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART";
    case 3007: return "CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH";
    case 3008: return "CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING";
    case 3009: return "CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE";
    case 3010: return "CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT";
    case 3011: return "CUDNN_STATUS_NOT_SUPPORTED_PADDING";
    case 3012: return "CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM";
    case 3013: return "CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API";
    case 3014: return "CUDNN_STATUS_NOT_SUPPORTED_INVALID_DYNAMIC_SHAPE";
    case 4000: return "CUDNN_STATUS_INTERNAL_ERROR";
    case 4001: return "CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED";
    case 4002: return "CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE";
    case 4003: return "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED";
    case 4004: return "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED";
    case 4005: return "CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM";
    case 4006: return "CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED";
    case 5000: return "CUDNN_STATUS_EXECUTION_FAILED";
    case 5001: return "CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER";
    case 5002: return "CUDNN_STATUS_EXECUTION_FAILED_CUBLAS";
    case 5003: return "CUDNN_STATUS_EXECUTION_FAILED_CUDART";
    case 5004: return "CUDNN_STATUS_EXECUTION_FAILED_CURAND";
  }
  return "CUDNN_STATUS_UNKNOWN";
}

LAMINA_CUDNN_EXPORT int cudnnCreate(void** handle) {
  if (!handle) return kBadParam;
  *handle = new Handle();
  return kSuccess;
}
LAMINA_CUDNN_EXPORT int cudnnDestroy(void* handle) {
  Handle* h = const_cast<Handle*>(handle_of(handle));
  if (!h) return kBadParam;
  h->tag = 0;
  delete h;
  return kSuccess;
}
LAMINA_CUDNN_EXPORT int cudnnSetStream(void* handle, void* stream) {
  Handle* h = const_cast<Handle*>(handle_of(handle));
  if (!h) return kBadParam;
  h->stream = stream;
  return kSuccess;
}

// ---- descriptors -------------------------------------------------------------------------------
LAMINA_CUDNN_EXPORT int cudnnCreateTensorDescriptor(void** desc) {
  if (!desc) return kBadParam;
  *desc = new TensorDesc();
  return kSuccess;
}
LAMINA_CUDNN_EXPORT int cudnnSetTensor4dDescriptor(void* desc, int format, int dtype, int n, int c, int h, int w) {
  TensorDesc* d = const_cast<TensorDesc*>(as<TensorDesc>(desc, kTensorTag));
  if (!d) return kBadParam;
  if (int st = check_4d(format, dtype, n, c, h, w)) return st;
  d->format = format, d->dtype = dtype, d->n = n, d->c = c, d->h = h, d->w = w;
  d->set = true;
  return kSuccess;
}
LAMINA_CUDNN_EXPORT int cudnnDestroyTensorDescriptor(void* desc) {
  if (!desc) return kSuccess;  // as cudaFree(NULL)
  TensorDesc* d = const_cast<TensorDesc*>(as<TensorDesc>(desc, kTensorTag));
  if (!d) return kBadParam;
  d->tag = 0;
  delete d;
  return kSuccess;
}

LAMINA_CUDNN_EXPORT int cudnnCreateFilterDescriptor(void** desc) {
  if (!desc) return kBadParam;
  *desc = new FilterDesc();
  return kSuccess;
}
// Note the order: data type, then format (cudnnSetTensor4dDescriptor takes format first).
LAMINA_CUDNN_EXPORT int cudnnSetFilter4dDescriptor(void* desc, int dtype, int format, int k, int c, int h, int w) {
  FilterDesc* d = const_cast<FilterDesc*>(as<FilterDesc>(desc, kFilterTag));
  if (!d) return kBadParam;
  if (int st = check_4d(format, dtype, k, c, h, w)) return st;
  d->format = format, d->dtype = dtype, d->k = k, d->c = c, d->h = h, d->w = w;
  d->set = true;
  return kSuccess;
}
LAMINA_CUDNN_EXPORT int cudnnDestroyFilterDescriptor(void* desc) {
  if (!desc) return kSuccess;
  FilterDesc* d = const_cast<FilterDesc*>(as<FilterDesc>(desc, kFilterTag));
  if (!d) return kBadParam;
  d->tag = 0;
  delete d;
  return kSuccess;
}

LAMINA_CUDNN_EXPORT int cudnnCreateConvolutionDescriptor(void** desc) {
  if (!desc) return kBadParam;
  *desc = new ConvDesc();
  return kSuccess;
}
// BAD_PARAM: negative pads, non-positive strides or dilations, an unknown mode or data type.
LAMINA_CUDNN_EXPORT int cudnnSetConvolution2dDescriptor(void* desc, int pad_h, int pad_w, int u, int v, int dil_h,
                                                         int dil_w, int mode, int compute) {
  ConvDesc* d = const_cast<ConvDesc*>(as<ConvDesc>(desc, kConvTag));
  if (!d) return kBadParam;
  if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dil_h <= 0 || dil_w <= 0) return kBadParam;
  if ((mode != kConvolution && mode != kCrossCorrelation) || !known_data_type(compute)) return kBadParam;
  d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v, d->dil_h = dil_h, d->dil_w = dil_w;
  d->mode = mode, d->compute = compute;
  d->set = true;
  return kSuccess;
}
LAMINA_CUDNN_EXPORT int cudnnSetConvolutionGroupCount(void* desc, int groups) {
  ConvDesc* d = const_cast<ConvDesc*>(as<ConvDesc>(desc, kConvTag));
  if (!d || groups < 1) return kBadParam;
  d->groups = groups;
  return kSuccess;
}
LAMINA_CUDNN_EXPORT int cudnnSetConvolutionMathType(void* desc, int math) {
  ConvDesc* d = const_cast<ConvDesc*>(as<ConvDesc>(desc, kConvTag));
  if (!d || math < 0 || math > kLastMathType) return kBadParam;
  d->math = math;
  return kSuccess;
}
LAMINA_CUDNN_EXPORT int cudnnDestroyConvolutionDescriptor(void* desc) {
  if (!desc) return kSuccess;
  ConvDesc* d = const_cast<ConvDesc*>(as<ConvDesc>(desc, kConvTag));
  if (!d) return kBadParam;
  d->tag = 0;
  delete d;
  return kSuccess;
}

LAMINA_CUDNN_EXPORT int cudnnGetConvolution2dForwardOutputDim(const void* conv, const void* x, const void* filter,
                                                               int* n, int* c, int* h, int* w) {
  if (!n || !c || !h || !w) return kBadParam;
  Geom g;
  if (int st = check_input(x, filter, conv, g)) return st;
  *n = g.n, *c = g.k, *h = g.oh, *w = g.ow;
  return kSuccess;
}

// ---- forward -----------------------------------------------------------------------------------
LAMINA_CUDNN_EXPORT int cudnnGetConvolutionForwardAlgorithm_v7(void* handle, const void* x, const void* filter,
                                                                const void* conv, const void* y, int requested,
                                                                int* returned, void* results) {
  Geom g;
  if (int st = check_problem(x, filter, conv, y, g)) return st;
  return query_algos(Op::kForward, handle, g, requested, returned, results);
}
LAMINA_CUDNN_EXPORT int cudnnGetConvolutionForwardWorkspaceSize(void* handle, const void* x, const void* filter,
                                                                 const void* conv, const void* y, int algo,
                                                                 size_t* bytes) {
  Geom g;
  if (!handle_of(handle) || !bytes) return kBadParam;
  if (int st = check_problem(x, filter, conv, y, g)) return st;
  return workspace_bytes(Op::kForward, algo, g, bytes);
}
LAMINA_CUDNN_EXPORT int cudnnConvolutionForward(void* handle, const void* alpha, const void* xd, const void* x,
                                                const void* fd, const void* w, const void* conv, int algo,
                                                void* workspace, size_t workspace_size, const void* beta,
                                                const void* yd, void* y) {
  Geom g;
  if (int st = check_problem(xd, fd, conv, yd, g)) return st;
  size_t needed = 0;
  if (int st = check_call(Op::kForward, handle, g, alpha, beta, x, w, y, algo, workspace, workspace_size, &needed))
    return st;
  return queue_conv(Op::kForward, handle, g, alpha, beta, x, w, y, workspace, needed);
}

// ---- backward data: dx = alpha * (dy convolved back through w) + beta * dx ----------------------
LAMINA_CUDNN_EXPORT int cudnnGetConvolutionBackwardDataAlgorithm_v7(void* handle, const void* filter, const void* dy,
                                                                     const void* conv, const void* dx, int requested,
                                                                     int* returned, void* results) {
  Geom g;
  if (int st = check_problem(dx, filter, conv, dy, g)) return st;
  return query_algos(Op::kBackwardData, handle, g, requested, returned, results);
}
LAMINA_CUDNN_EXPORT int cudnnGetConvolutionBackwardDataWorkspaceSize(void* handle, const void* filter, const void* dy,
                                                                      const void* conv, const void* dx, int algo,
                                                                      size_t* bytes) {
  Geom g;
  if (!handle_of(handle) || !bytes) return kBadParam;
  if (int st = check_problem(dx, filter, conv, dy, g)) return st;
  return workspace_bytes(Op::kBackwardData, algo, g, bytes);
}
LAMINA_CUDNN_EXPORT int cudnnConvolutionBackwardData(void* handle, const void* alpha, const void* fd, const void* w,
                                                     const void* dyd, const void* dy, const void* conv, int algo,
                                                     void* workspace, size_t workspace_size, const void* beta,
                                                     const void* dxd, void* dx) {
  Geom g;
  if (int st = check_problem(dxd, fd, conv, dyd, g)) return st;
  size_t needed = 0;
  if (int st = check_call(Op::kBackwardData, handle, g, alpha, beta, w, dy, dx, algo, workspace, workspace_size,
                          &needed))
    return st;
  return queue_conv(Op::kBackwardData, handle, g, alpha, beta, w, dy, dx, workspace, needed);
}

// ---- backward filter: dw = alpha * (x correlated with dy) + beta * dw ----------------------------
LAMINA_CUDNN_EXPORT int cudnnGetConvolutionBackwardFilterAlgorithm_v7(void* handle, const void* x, const void* dy,
                                                                       const void* conv, const void* dw,
                                                                       int requested, int* returned, void* results) {
  Geom g;
  if (int st = check_problem(x, dw, conv, dy, g)) return st;
  return query_algos(Op::kBackwardFilter, handle, g, requested, returned, results);
}
LAMINA_CUDNN_EXPORT int cudnnGetConvolutionBackwardFilterWorkspaceSize(void* handle, const void* x, const void* dy,
                                                                        const void* conv, const void* dw, int algo,
                                                                        size_t* bytes) {
  Geom g;
  if (!handle_of(handle) || !bytes) return kBadParam;
  if (int st = check_problem(x, dw, conv, dy, g)) return st;
  return workspace_bytes(Op::kBackwardFilter, algo, g, bytes);
}
LAMINA_CUDNN_EXPORT int cudnnConvolutionBackwardFilter(void* handle, const void* alpha, const void* xd, const void* x,
                                                       const void* dyd, const void* dy, const void* conv, int algo,
                                                       void* workspace, size_t workspace_size, const void* beta,
                                                       const void* dwd, void* dw) {
  Geom g;
  if (int st = check_problem(xd, dwd, conv, dyd, g)) return st;
  size_t needed = 0;
  if (int st = check_call(Op::kBackwardFilter, handle, g, alpha, beta, x, dy, dw, algo, workspace, workspace_size,
                          &needed))
    return st;
  return queue_conv(Op::kBackwardFilter, handle, g, alpha, beta, x, dy, dw, workspace, needed);
}
