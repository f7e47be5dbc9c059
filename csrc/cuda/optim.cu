// Fused optimizer updates in place (the same rules and float operations as csrc/cpu/optim.cpp)
// and the sum of squares that gradient clipping by norm reads.
#include "gpu.h"

namespace lamina {
namespace gpu {

static void check_same(const char* op, const Buffer& var, const Buffer& other, const char* what) {
  check_dtype(op, what, other, F32);
  LAMINA_CHECK(other.numel == var.numel, op << ": " << what << " holds " << other.numel << " elements, the variable "
                                            << var.numel);
}

__global__ void sgd_kernel(float* w, const float* g, float* v, int64_t n, float lr, float mom, bool nesterov) {
  GRID_STRIDE(i, n) {
    if (mom == 0.f) {
      w[i] -= lr * g[i];
    } else {
      const float vi = mom * v[i] - lr * g[i];
      v[i] = vi;
      w[i] += nesterov ? mom * vi - lr * g[i] : vi;
    }
  }
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

__global__ void adam_kernel(float* w, const float* g, float* m, float* v, float* vh, int64_t n, float lr_t, float c1,
                            float c2, float eps, float wd, bool amsgrad) {
  GRID_STRIDE(i, n) {
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
