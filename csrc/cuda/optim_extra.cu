// RMSprop and Adagrad, in place: the same rules and float operations as csrc/cpu/optim.cpp's
// rmsprop_span and adagrad_span (one thread per element).
#include <cmath>

#include "gpu.h"

namespace lamina {
namespace gpu {
namespace {

void check_same(const char* op, const Buffer& var, const Buffer& other, const char* what) {
  check_dtype(op, what, other, F32);
  LAMINA_CHECK(other.numel == var.numel, op << ": " << what << " holds " << other.numel << " elements, the variable "
                                            << var.numel);
}

// velocity = rho v + (1 - rho) g^2; centered: ag = rho ag + (1 - rho) g, denom = velocity - ag^2 + eps;
// else denom = velocity + eps. inc = lr g / sqrt(denom); momentum: mom = momentum * mom + inc; var -= mom.
__global__ void rmsprop_kernel(float* w, const float* g, float* vel, float* ag, float* mo, int64_t n, float lr,
                               float rho, float momentum, float eps, bool centered) {
  GRID_STRIDE(i, n) {
    const float gi = g[i];
    const float v = __fadd_rn(__fmul_rn(rho, vel[i]), __fmul_rn(__fmul_rn(1.f - rho, gi), gi));
    vel[i] = v;
    float denom = v + eps;
    if (centered) {
      const float a = __fadd_rn(__fmul_rn(rho, ag[i]), __fmul_rn(1.f - rho, gi));
      ag[i] = a;
      denom = __fadd_rn(__fsub_rn(v, __fmul_rn(a, a)), eps);
    }
    const float inc = __fmul_rn(lr, gi) / sqrtf(denom);
    if (momentum > 0.f) {
      const float mi = __fadd_rn(__fmul_rn(momentum, mo[i]), inc);
      mo[i] = mi;
      w[i] -= mi;
    } else {
      w[i] -= inc;
    }
  }
}

// acc += g^2; var -= lr g / sqrt(acc + eps)
__global__ void adagrad_kernel(float* w, const float* g, float* a, int64_t n, float lr, float eps) {
  GRID_STRIDE(i, n) {
    const float ai = __fadd_rn(a[i], __fmul_rn(g[i], g[i]));
    a[i] = ai;
    w[i] -= __fmul_rn(lr, g[i]) / sqrtf(ai + eps);
  }
}

}  // namespace

void rmsprop(Buffer& var, const Buffer& grad, Buffer& vel, Buffer& avg_grad, Buffer& mom, double lr, double rho,
             double momentum, double eps, bool centered) {
  const char* op = "rmsprop";
  check_dtype(op, "variable", var, F32);
  check_same(op, var, vel, "velocity");
  if (centered) check_same(op, var, avg_grad, "average_gradient");
  if (momentum > 0) check_same(op, var, mom, "momentum");
  check_same(op, var, grad, "gradient");
  const float mo = float(momentum);
  Context& c = op_device(op, {&var, &grad, &vel, centered ? &avg_grad : nullptr, mo > 0.f ? &mom : nullptr});
  if (var.numel)
    rmsprop_kernel<<<grid_for(var.numel), 256, 0, c.stream>>>(
        var.data<float>(), grad.data<float>(), vel.data<float>(), centered ? avg_grad.data<float>() : nullptr,
        mo > 0.f ? mom.data<float>() : nullptr, var.numel, float(lr), float(rho), mo, float(eps), centered);
  launched(c, op);
}

void adagrad(Buffer& var, const Buffer& grad, Buffer& acc, double lr, double eps) {
  const char* op = "adagrad";
  check_dtype(op, "variable", var, F32);
  check_same(op, var, grad, "gradient");
  check_same(op, var, acc, "accumulator");
  Context& c = op_device(op, {&var, &grad, &acc});
  if (var.numel)
    adagrad_kernel<<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), grad.data<float>(), acc.data<float>(),
                                                              var.numel, float(lr), float(eps));
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
