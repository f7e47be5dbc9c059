// The CUDA device module's shared definitions: device contexts (one stream and one caching
// allocator per device), the device Buffer, and the launchers of csrc/cuda/*.cu.
//
// gpu:N names a *virtual* GPU: each physical GPU is split into `split` virtual devices
// (set_virtual_split or LAMINA_VIRTUAL_GPUS, default 1), gpu:N on physical GPU N / split, each
// with its own stream and memory pool, so model-parallel and pipelined work runs on one card.
// Kernels are queued on their device's stream and return at once; the host waits only where
// it reads a value (to_numpy, sum_squares, synchronize) or checks labels (the losses).
// LAMINA_LAUNCH_BLOCKING=1 waits after every kernel (a kernel's error is then raised by its call).
#pragma once
#include <cuda_runtime.h>

#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../checks.h"
#include "../opcodes.h"
#include "../types.h"

namespace lamina {
namespace gpu {

// A kernel that has no CUDA version for these arguments (a dtype, an op code, a rank above
// kMaxDims): Python's device table then runs the CPU kernel on host copies (backend/device.py).
struct Unsupported : std::runtime_error { using std::runtime_error::runtime_error; };
// A CUDA runtime failure (out of memory is AllocError).
struct CudaError : std::runtime_error { using std::runtime_error::runtime_error; };

void check_cuda(cudaError_t e, const char* what);
#define LAMINA_CUDA_CHECK(x) ::lamina::gpu::check_cuda((x), #x)

struct Context {
  int index = 0, physical = 0;
  cudaStream_t stream = nullptr;
  bool blocking = false;
  std::mutex mu;                             // guards the pool
  std::multimap<size_t, void*> free_blocks;  // rounded size -> block, reusable in stream order
  size_t in_use = 0, cached = 0, system_allocs = 0;
  int64_t launches = 0;
  // Deferred checks (defer_check): on the device, kCheckSlots scratch slots (a check's first bad flat
  // index, taken in turn) and then the record of the earliest failed check (its number, index, value
  // and the value before it); on the host, each queued check's error, numbered in queue order.
  std::mutex check_mu;
  unsigned long long* check_slots = nullptr;
  int64_t check_turn = 0;
  struct PendingCheck {
    std::function<std::string(int64_t index, int64_t value, int64_t prev)> message;
    bool index_error;
  };
  std::vector<PendingCheck> pending_checks;
  // Pinned staging blocks for host-to-device copies (copy_from_host), each reusable once the copy
  // that read it has run (its event).
  struct Staging {
    void* host = nullptr;
    size_t size = 0;
    cudaEvent_t done = nullptr;
    bool busy = false;
  };
  std::mutex staging_mu;
  std::vector<Staging> staging;
  size_t staged_bytes = 0;
  // Copies from the host run on copy_stream, into input blocks (input_buffer): a block is reused
  // once the kernels that `stream` queued before its buffer died have run (its `released` event),
  // so a copy never overwrites what a queued kernel still reads, and copies overlap kernels.
  cudaStream_t copy_stream = nullptr;
  struct InputBlock {
    void* ptr = nullptr;
    size_t size = 0;
    cudaEvent_t released = nullptr;
    bool used = false;
    bool cached = false;  // counted in `cached` while idle
  };
  std::vector<InputBlock> input_blocks;  // guarded by mu
};

int physical_count();
int device_count();  // virtual devices
int virtual_split();
void set_virtual_split(int n);
Context& context(int index);  // checks the index, creates the stream on first use
// Waits for every kernel queued on the device, then raises the first failed deferred check.
void synchronize(Context& c);

// Copies n bytes from (pageable) host memory to the device without waiting for the device: the
// bytes go into a pinned staging block first (a memcpy on the host), and from there to dst on c's
// stream, asynchronously, in stream order; the block is reused once that copy has run. A plain
// cudaMemcpyAsync from pageable memory would wait for the stream (every kernel queued before it).
// Copies above kMaxStagedCopy bytes, or when kMaxStagingBytes of blocks are all in flight, take
// that plain path.
constexpr size_t kMaxStagedCopy = size_t(64) << 20, kMaxStagingBytes = size_t(256) << 20;
void copy_from_host(Context& c, void* dst, const void* src, size_t n);


void empty_cache();

struct Buffer {
  void* ptr = nullptr;
  int64_t numel = 0;
  DType dtype = F32;
  size_t capacity = 0;
  int device = 0;
  Context* ctx = nullptr;  // its device's context (contexts live as long as the process)
  bool input = false;      // an input block (input_buffer), not the pool's
  Buffer(int64_t n, DType dt, int dev);
  struct InputTag {};
  Buffer(int64_t n, DType dt, int dev, InputTag);  // input_buffer's
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <class T> T* data() const { return static_cast<T*>(ptr); }
};
using BufferPtr = std::shared_ptr<Buffer>;

// A buffer of n elements filled from host memory (from_numpy): the copy runs on c's copy stream
// into an input block, and c's stream waits for it before its next kernel; neither the host nor
// the kernels already queued wait for the copy.
BufferPtr buffer_from_host(Context& c, int64_t n, DType dt, const void* src);

// Checks of data that would need the host to wait (a label, id or index out of range) are deferred,
// as device-side asserts are: the check is queued on the device and the call returns; the host reads
// the record at its next wait on the device (synchronize, to_numpy) and raises the earliest failed
// check's error -- ValueError, or IndexError where the CPU raises that -- forgetting the others.
// The kernels after a failed check run; they must not read or write out of bounds for the bad
// values (they write NaN or zeros there, or skip them). Checks reuse kCheckSlots scratch slots in
// stream order, so a training loop that never reads queues them without waiting; only after
// kMaxPendingChecks queued checks does the next one wait first (and raise a failed one).
constexpr int kCheckSlots = 64;
constexpr size_t kMaxPendingChecks = size_t(1) << 16;
enum class CheckError { Value, Index };
// `flag(slot)` launches, on c.stream, the kernels that atomicMin into *slot (all ones before) the
// first bad flat index of `ints` (int32 or int64); `message(index, ints[index], ints[index - 1] or 0)`
// is the error raised if one was found.
void defer_check(Context& c, const Buffer& ints, CheckError kind,
                 std::function<std::string(int64_t index, int64_t value, int64_t prev)> message,
                 const std::function<void(unsigned long long* slot)>& flag);
// The common check: every value lies in [lo, hi).
void defer_range_check(Context& c, const Buffer& ints, int64_t lo, int64_t hi,
                       std::function<std::string(int64_t index, int64_t value)> message,
                       CheckError kind = CheckError::Value);
// After a wait on c's stream: raises the earliest failed deferred check (and forgets them all).
void raise_failed_checks(Context& c);

// The device all of an op's buffers are on (nullptr entries are skipped); makes it current.
Context& op_device(const char* op, std::initializer_list<const Buffer*> bufs);
Context& op_device(const char* op, const std::vector<const Buffer*>& bufs);  // a call's many buffers (*_multi)
// After a launch: raises a launch error; waits when LAMINA_LAUNCH_BLOCKING is set.
void launched(Context& c, const char* op);

// A grid-stride loop over [0, n): `GRID_STRIDE(i, n) body;` in a kernel.
#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// Grid size for n elements at 256 threads a block (grid-stride loops cover the rest).
inline unsigned grid_for(int64_t n) {
  int64_t b = (n + 255) / 256;
  return unsigned(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// Broadcasting: up to kMaxDims output dimensions; each operand's element strides, 0 where it
// is broadcast. Built on the host, passed by value to the kernels.
constexpr int kMaxDims = 8;
struct Bcast {
  int ndim = 0;
  int64_t dims[kMaxDims];
  int64_t st[3][kMaxDims];
};
Bcast make_bcast(const char* op, std::initializer_list<const Shape*> ins, const Shape& out);

// ---- launchers (csrc/cuda/*.cu) ----------------------------------------------------------------
void fill(Buffer& b, double v);
void copy(const Buffer& src, Buffer& dst);
void cast(const Buffer& src, Buffer& dst);
void copy_between(const Buffer& src, Buffer& dst);

void binary(int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os);
void unary(int op, const Buffer& x, Buffer& o, double alpha);
void unary_grad(int op, const Buffer& saved, const Buffer& grad, Buffer& out, double alpha);
void where(const Buffer& c, const Shape& cs, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs,
           Buffer& o, const Shape& os);
void broadcast_to(const Buffer& x, const Shape& xs, Buffer& o, const Shape& os);
void clip(const Buffer& x, double lo, double hi, Buffer& o);
void clip_grad(const Buffer& x, double lo, double hi, const Buffer& g, Buffer& o);
void axpby(double a, const Buffer& x, double b, Buffer& y);

void strided_copy(const Buffer& src, int64_t soff, const Shape& sst, Buffer& dst, int64_t doff, const Shape& dst_st,
                  const Shape& shape, bool accumulate);

void reduce(int op, const Buffer& x, int64_t outer, int64_t R, int64_t inner, Buffer& y);

void matmul(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
            bool trans_a, bool trans_b, bool accumulate, const Buffer* bias);
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const Buffer& a, const Buffer& b,
          double beta, Buffer& c, int64_t lda, int64_t ldb, int64_t ldc);

void softmax(const Buffer& x, int64_t outer, int64_t R, int64_t inner, bool log, Buffer& y);
void softmax_grad(const Buffer& y, const Buffer& g, int64_t outer, int64_t R, int64_t inner, bool log, Buffer& o);
void xent_sparse(const Buffer& x, const Buffer& labels, int64_t outer, int64_t K, int64_t inner, bool logits,
                 double eps, Buffer& loss, Buffer& aux);
void xent_sparse_grad(const Buffer& x, const Buffer& labels, const Buffer& aux, const Buffer& g, int64_t outer,
                      int64_t K, int64_t inner, bool logits, double eps, Buffer& dx);
void bias_relu(const Buffer& x, const Buffer& b, Buffer& o);
void bias_relu_grad(const Buffer& y, const Buffer& g, Buffer* dx, Buffer* db, int64_t C);

// For kernels built on products (convolution, RNNs): row-major C (M x N, leading dimension ldc)
// = alpha * op(A) op(B) + beta * C on c's stream, through cuBLAS when loaded, else the tiled
// kernel. op(A) is M x K (A is K x M, leading dimension lda, when ta); op(B) is K x N.
void gemm_f32(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// cuBLAS (cublas.cpp), loaded at run time when the machine has it.
bool load_cublas(const std::string& path);
std::string cublas_status();
void set_use_cublas(bool on);
void set_allow_tf32(bool on);
bool allow_tf32();
bool cublas_gemm(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc,
                 int64_t sc, int64_t batches);
// bfloat16 A and B, float32 compute, C bfloat16 or float32 (beta 0 or 1); false where cuBLAS (or
// its GemmStridedBatchedEx) is missing.
// Whether cublas_gemm_bf16 can run on c's device (cuBLAS loaded and enabled, with its
// GemmStridedBatchedEx): kernels check it before queuing work they would otherwise leave half done.
bool cublas_bf16_available(Context& c);
bool cublas_gemm_bf16(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                      int64_t sa, const void* B, int64_t ldb, int64_t sb, float beta, void* C, bool c_bf16,
                      int64_t ldc, int64_t sc, int64_t batches);

void sgd(Buffer& var, const Buffer& grad, Buffer& vel, double lr, double momentum, bool nesterov);
void adam(Buffer& var, const Buffer& grad, Buffer& m, Buffer& v, Buffer& vhat, double lr_t, double b1, double b2,
          double eps, bool amsgrad, double wd_lr);
void adam_multi(const std::vector<BufferPtr>& vars, const std::vector<BufferPtr>& grads,
                const std::vector<BufferPtr>& ms, const std::vector<BufferPtr>& vs, const std::vector<BufferPtr>& vhats,
                double lr_t, double b1, double b2, double eps, bool amsgrad, const std::vector<double>& wd_lrs);
void sgd_multi(const std::vector<BufferPtr>& vars, const std::vector<BufferPtr>& grads,
               const std::vector<BufferPtr>& vels, double lr, double momentum, bool nesterov);
void weight_decay(Buffer& var, double wd, double lr);
double sum_squares(const Buffer& x);

// ---- recurrent layers (rnn.cu): fused LSTM, GRU and simple RNN over whole sequences (float32 or bfloat16) ----
void lstm_forward(const Buffer& x, const Buffer& h0, const Buffer& c0, const Buffer& K, const Buffer& R,
                  const Buffer* bias, const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B,
                  int64_t T, int64_t F, int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& c_last,
                  Buffer& gates, Buffer* cs);
void lstm_backward(const Buffer& x, const Buffer& h0, const Buffer& c0, const Buffer& K, const Buffer& R,
                   const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F,
                   int64_t U, bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer& cs,
                   const Buffer* dout, const Buffer* dh_last, const Buffer* dc_last, Buffer* dx, Buffer* dh0,
                   Buffer* dc0, Buffer* dK, Buffer* dR, Buffer* db, int64_t accumulate, Buffer* dgates,
                   Buffer* dgates_rec, Buffer* h_prev);
void gru_forward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* bias,
                 const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F,
                 int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& gates, Buffer* rh);
void gru_backward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* mask,
                  const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F, int64_t U,
                  bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer& rh, const Buffer* dout,
                  const Buffer* dh_last, Buffer* dx, Buffer* dh0, Buffer* dK, Buffer* dR, Buffer* db,
                  int64_t accumulate, Buffer* dgates, Buffer* dgates_rec, Buffer* h_prev);
void simple_rnn_forward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* bias,
                        const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T,
                        int64_t F, int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& gates);
void simple_rnn_backward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* mask,
                         const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F, int64_t U,
                         bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer* dout,
                         const Buffer* dh_last, Buffer* dx, Buffer* dh0, Buffer* dK, Buffer* dR, Buffer* db,
                         int64_t accumulate, Buffer* dgates, Buffer* dgates_rec, Buffer* h_prev);

// ---- convolution and pooling (conv.cu): conv2d (float32, or bfloat16 through cuBLAS), depthwise_conv2d (float32),
// pool2d (float32 or bfloat16), NHWC ----
void conv2d_forward(const Buffer& x, const Shape& xs, const Buffer& w, const Shape& ws, Buffer& out, const Shape& os,
                    const Shape& strides, const Shape& dilation, const Shape& pads);
void conv2d_backward(const Buffer& x, const Shape& xs, const Buffer& w, const Shape& ws, const Buffer& g,
                     const Shape& gs, Buffer* dx, Buffer* dw, const Shape& strides, const Shape& dilation,
                     const Shape& pads);
void depthwise_conv2d_forward(const Buffer& x, const Shape& xs, const Buffer& w, const Shape& ws, Buffer& out,
                              const Shape& os, const Shape& strides, const Shape& dilation, const Shape& pads);
void depthwise_conv2d_backward(const Buffer& x, const Shape& xs, const Buffer& w, const Shape& ws, const Buffer& g,
                               const Shape& gs, Buffer* dx, Buffer* dw, const Shape& strides, const Shape& dilation,
                               const Shape& pads);
void pool2d_forward(int mode, const Buffer& x, const Shape& xs, Buffer& out, const Shape& os, const Shape& window,
                    const Shape& strides, const Shape& pads, Buffer* indices);
void pool2d_backward(int mode, const Shape& xs, const Buffer& g, const Shape& gs, Buffer& dx, const Shape& window,
                     const Shape& strides, const Shape& pads, const Buffer* indices);

// ---- normalisation (norm.cu), argmax / scans (scan.cu), RMSprop / Adagrad (optim_extra.cu) ----
// batch norm (training, inference) and layer norm (norm.cu)
void batch_norm_train(const Buffer& x, const Buffer* gamma, const Buffer* beta, int64_t outer, int64_t C, int64_t inner,
                      double eps, Buffer& y, Buffer& mean, Buffer& var);
void batch_norm_train_grad(const Buffer& x, const Buffer* gamma, const Buffer& mean, const Buffer& var, const Buffer& g,
                           int64_t outer, int64_t C, int64_t inner, double eps, Buffer* dx, Buffer* dgamma,
                           Buffer* dbeta);
void batch_norm_infer(const Buffer& x, const Buffer& mean, const Buffer& var, const Buffer* scale, const Buffer* offset,
                      int64_t outer, int64_t C, int64_t inner, double eps, Buffer& y, double lo, double hi);
void batch_norm_infer_grad(const Buffer& x, const Buffer& mean, const Buffer& var, const Buffer* scale, const Buffer& g,
                           int64_t outer, int64_t C, int64_t inner, double eps, Buffer* dx, Buffer* dmean,
                           Buffer* dvar, Buffer* dscale, Buffer* doffset);
void layer_norm(const Buffer& x, const Buffer* gamma, const Buffer* beta, int64_t outer, int64_t R, int64_t inner,
                double eps, Buffer& y, Buffer& mean, Buffer& rstd);
void layer_norm_grad(const Buffer& x, const Buffer* gamma, const Buffer& mean, const Buffer& rstd, const Buffer& g,
                     int64_t outer, int64_t R, int64_t inner, Buffer* dx, Buffer* dgamma, Buffer* dbeta);
// argmax / argmin, cumulative sums and products (scan.cu)
void argreduce(bool is_max, const Buffer& x, int64_t outer, int64_t R, int64_t inner, Buffer& y);
void cumulative(int op, const Buffer& x, int64_t outer, int64_t R, int64_t inner, Buffer& y, bool reverse);
void cumprod_grad(const Buffer& x, const Buffer& g, int64_t outer, int64_t R, int64_t inner, Buffer& out);
// RMSprop and Adagrad (optim_extra.cu)
void rmsprop(Buffer& var, const Buffer& grad, Buffer& vel, Buffer& avg_grad, Buffer& mom, double lr, double rho,
             double momentum, double eps, bool centered);
void adagrad(Buffer& var, const Buffer& grad, Buffer& acc, double lr, double eps);

// ---- random draws and dropout (random.cu), embedding and take (embedding.cu) ----
void random_uniform(uint64_t seed, uint64_t counter, double lo, double hi, Buffer& out);
void random_normal(uint64_t seed, uint64_t counter, double mean, double stddev, bool truncated, Buffer& out);
// The same draws computed on the host with the device's arithmetic (philox.cuh): tests compare
// them with the CPU module's on machines without a GPU.
std::vector<float> host_random_uniform(uint64_t seed, uint64_t counter, double lo, double hi, int64_t n);
std::vector<float> host_random_normal(uint64_t seed, uint64_t counter, double mean, double stddev, bool truncated,
                                      int64_t n);
void random_randint(uint64_t seed, uint64_t counter, int64_t lo, int64_t hi, Buffer& out);
void random_gamma(uint64_t seed, uint64_t counter, uint32_t salt, const Buffer& alpha, bool log_space, Buffer& out);
void random_binomial(uint64_t seed, uint64_t counter, const Buffer& counts, const Buffer& probs, Buffer& out);
void dropout(const Buffer& x, uint64_t seed, uint64_t counter, double rate, Buffer& out, Buffer& mask);
void dropout_mask(uint64_t seed, uint64_t counter, double rate, Buffer& mask);
void dropout_grad(const Buffer& g, const Buffer& mask, double scale, Buffer& out);
void embedding(const Buffer& table, int64_t V, int64_t D, const Buffer& ids, Buffer& out);
void embedding_grad(const Buffer& g, const Buffer& ids, int64_t V, int64_t D, Buffer& out);
void embedding_scatter_add(Buffer& out, int64_t V, int64_t D, const Buffer& ids, const Buffer& values, bool zero);
void take(const Buffer& x, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, Buffer& out);
void take_grad(const Buffer& g, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, Buffer& gx);

}  // namespace gpu
}  // namespace lamina
