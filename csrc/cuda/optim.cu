// Fused optimizer updates in place (the same rules and float operations as csrc/cpu/optim.cpp)
// and the sum of squares that gradient clipping by norm reads.
#include <algorithm>
#include <array>
#include <vector>

#include "../optim_checks.h"
#include "gpu.h"

namespace lamina {
namespace gpu {

using optim_args::check_same;

__device__ __forceinline__ void sgd_element(float* w, const float* g, float* v, int64_t i, float lr, float mom,
                                            bool nesterov) {
  if (mom == 0.f) {
    w[i] -= lr * g[i];
  } else {
    const float vi = mom * v[i] - lr * g[i];
    v[i] = vi;
    w[i] += nesterov ? mom * vi - lr * g[i] : vi;
  }
}

__global__ void sgd_kernel(float* w, const float* g, float* v, int64_t n, float lr, float mom, bool nesterov) {
  GRID_STRIDE(i, n) sgd_element(w, g, v, i, lr, mom, nesterov);
}

void sgd(Buffer& var, const Buffer& grad, Buffer& vel, double lr, double momentum, bool nesterov) {
  check_dtype("sgd", "variable", var, F32);
  check_same("sgd", var, grad, "gradient");
  const float mom = float(momentum);
  if (mom != 0.f) check_same("sgd", var, vel, "velocity");
  Context& c = op_device("sgd", {&var, &grad, mom != 0.f ? &vel : nullptr});
  if (var.numel)
    sgd_kernel<<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), grad.data<float>(),
                                                          mom != 0.f ? vel.data<float>() : nullptr, var.numel,
                                                          float(lr), mom, nesterov);
  launched(c, "sgd");
}

__device__ __forceinline__ void adam_element(float* w, const float* g, float* m, float* v, float* vh, int64_t i,
                                             float lr_t, float c1, float c2, float eps, float wd, bool amsgrad) {
  const float gi = g[i];
  const float wi = w[i] - w[i] * wd;
  const float mi = m[i] + (gi - m[i]) * c1;
  const float vi = v[i] + (gi * gi - v[i]) * c2;
  m[i] = mi;
  v[i] = vi;
  float d = vi;
  if (amsgrad) { d = vh[i] > vi ? vh[i] : vi; vh[i] = d; }
  w[i] = wi - lr_t * mi / (sqrtf(d) + eps);
}

__global__ void adam_kernel(float* w, const float* g, float* m, float* v, float* vh, int64_t n, float lr_t, float c1,
                            float c2, float eps, float wd, bool amsgrad) {
  GRID_STRIDE(i, n) adam_element(w, g, m, v, vh, i, lr_t, c1, c2, eps, wd, amsgrad);
}

void adam(Buffer& var, const Buffer& grad, Buffer& m, Buffer& v, Buffer& vhat, double lr_t, double b1, double b2,
          double eps, bool amsgrad, double wd_lr) {
  check_dtype("adam", "variable", var, F32);
  check_same("adam", var, m, "m");
  check_same("adam", var, v, "v");
  if (amsgrad) check_same("adam", var, vhat, "vhat");
  check_same("adam", var, grad, "gradient");
  Context& c = op_device("adam", {&var, &grad, &m, &v, amsgrad ? &vhat : nullptr});
  if (var.numel)
    adam_kernel<<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), grad.data<float>(), m.data<float>(),
                                                           v.data<float>(), amsgrad ? vhat.data<float>() : nullptr,
                                                           var.numel, float(lr_t), 1.f - float(b1), 1.f - float(b2),
                                                           float(eps), float(wd_lr), amsgrad);
  launched(c, "adam");
}

// The *_multi updates: up to kMultiTensors variables a launch, passed by value (K pointers per
// variable -- the variable, its gradient, its slots --, its size and one number of its own); block b
// works on elements [k * kMultiChunk, (k + 1) * kMultiChunk) of the variable whose blocks hold b.
constexpr int kMultiTensors = 24;
constexpr int64_t kMultiChunk = 256 * 16;
template <int K>
struct MultiList {
  float* p[K][kMultiTensors];
  int64_t n[kMultiTensors];
  float own[kMultiTensors];
  int64_t first_block[kMultiTensors + 1];
  int count;
};

// This block's variable, and its element range [start, end).
template <int K>
__device__ __forceinline__ int multi_span(const MultiList<K>& L, int64_t& start, int64_t& end) {
  const int64_t b = blockIdx.x;
  int t = 0;
  while (t + 1 < L.count && L.first_block[t + 1] <= b) ++t;
  start = (b - L.first_block[t]) * kMultiChunk + threadIdx.x;
  end = (b - L.first_block[t] + 1) * kMultiChunk < L.n[t] ? (b - L.first_block[t] + 1) * kMultiChunk : L.n[t];
  return t;
}

// lists[k][i]: variable i's k-th buffer (a null entry: an unused slot); own[i]: its number.
template <int K, class Launch>
void launch_multi(const char* op, const std::array<const std::vector<BufferPtr>*, K>& lists,
                  const std::vector<double>* own, Launch launch) {
  const std::vector<BufferPtr>& vars = *lists[0];
  if (vars.empty()) return;
  std::vector<const Buffer*> all;
  all.reserve(K * vars.size());
  for (int k = 0; k < K; ++k)
    for (const BufferPtr& b : *lists[k]) all.push_back(b.get());
  Context& c = op_device(op, all);
  for (size_t s0 = 0; s0 < vars.size(); s0 += kMultiTensors) {
    MultiList<K> L{};
    int64_t blocks = 0;
    for (size_t i = s0; i < std::min(vars.size(), s0 + kMultiTensors); ++i) {
      if (!vars[i]->numel) continue;
      const int t = L.count++;
      for (int k = 0; k < K; ++k) L.p[k][t] = (*lists[k])[i] ? (*lists[k])[i]->template data<float>() : nullptr;
      L.n[t] = vars[i]->numel;
      L.own[t] = own ? float((*own)[i]) : 0.f;
      L.first_block[t] = blocks;
      blocks += (vars[i]->numel + kMultiChunk - 1) / kMultiChunk;
    }
    if (!L.count) continue;
    L.first_block[L.count] = blocks;
    launch(L, unsigned(blocks), c.stream);
    launched(c, op);
  }
}

__global__ void adam_multi_kernel(MultiList<5> L, float lr_t, float c1, float c2, float eps, bool amsgrad) {
  int64_t i, end;
  const int t = multi_span(L, i, end);
  for (; i < end; i += blockDim.x)
    adam_element(L.p[0][t], L.p[1][t], L.p[2][t], L.p[3][t], L.p[4][t], i, lr_t, c1, c2, eps, L.own[t], amsgrad);
}

void adam_multi(const std::vector<BufferPtr>& vars, const std::vector<BufferPtr>& grads,
                const std::vector<BufferPtr>& ms, const std::vector<BufferPtr>& vs, const std::vector<BufferPtr>& vhats,
                double lr_t, double b1, double b2, double eps, bool amsgrad, const std::vector<double>& wd_lrs) {
  optim_args::check_adam_multi("adam_multi", vars, grads, ms, vs, vhats, wd_lrs, amsgrad);
  const std::vector<BufferPtr> none(vars.size());
  launch_multi<5>("adam_multi", {&vars, &grads, &ms, &vs, amsgrad ? &vhats : &none}, &wd_lrs,
                  [&](const MultiList<5>& L, unsigned blocks, cudaStream_t stream) {
                    adam_multi_kernel<<<blocks, 256, 0, stream>>>(L, float(lr_t), 1.f - float(b1), 1.f - float(b2),
                                                                  float(eps), amsgrad);
                  });
}

__global__ void sgd_multi_kernel(MultiList<3> L, float lr, float mom, bool nesterov) {
  int64_t i, end;
  const int t = multi_span(L, i, end);
  for (; i < end; i += blockDim.x) sgd_element(L.p[0][t], L.p[1][t], L.p[2][t], i, lr, mom, nesterov);
}

void sgd_multi(const std::vector<BufferPtr>& vars, const std::vector<BufferPtr>& grads,
               const std::vector<BufferPtr>& vels, double lr, double momentum, bool nesterov) {
  optim_args::check_sgd_multi("sgd_multi", vars, grads, vels, momentum);
  const std::vector<BufferPtr> none(vars.size());
  launch_multi<3>("sgd_multi", {&vars, &grads, float(momentum) != 0.f ? &vels : &none}, nullptr,
                  [&](const MultiList<3>& L, unsigned blocks, cudaStream_t stream) {
                    sgd_multi_kernel<<<blocks, 256, 0, stream>>>(L, float(lr), float(momentum), nesterov);
                  });
}

__global__ void weight_decay_kernel(float* w, int64_t n, float wd, float lr) {
  GRID_STRIDE(i, n) w[i] = w[i] - w[i] * wd * lr;
}

void weight_decay(Buffer& var, double wd, double lr) {
  check_dtype("weight_decay", "variable", var, F32);
  Context& c = op_device("weight_decay", {&var});
  if (var.numel) weight_decay_kernel<<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), var.numel, float(wd), float(lr));
  launched(c, "weight_decay");
}

// Sum of squares in double: per-block partial sums, then one atomicAdd each.
__global__ void sum_squares_kernel(const float* x, int64_t n, double* out) {
  __shared__ double part[256];
  double s = 0.0;
  GRID_STRIDE(i, n) s += double(x[i]) * double(x[i]);
  part[threadIdx.x] = s;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (int(threadIdx.x) < k) part[threadIdx.x] += part[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(out, part[0]);
}

double sum_squares(const Buffer& x) {
  check_dtype("sum_squares", "x", x, F32);
  Context& c = op_device("sum_squares", {&x});
  if (x.numel == 0) return 0.0;
  Buffer acc(1, I64, x.device);  // 8 bytes for one double
  LAMINA_CUDA_CHECK(cudaMemsetAsync(acc.ptr, 0, 8, c.stream));
  const unsigned g = grid_for(x.numel) < 1024 ? grid_for(x.numel) : 1024;
  sum_squares_kernel<<<g, 256, 0, c.stream>>>(x.data<float>(), x.numel, acc.data<double>());
  launched(c, "sum_squares");
  double total = 0.0;
  LAMINA_CUDA_CHECK(cudaMemcpyAsync(&total, acc.ptr, 8, cudaMemcpyDeviceToHost, c.stream));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  return total;
}

}  // namespace gpu
}  // namespace lamina
