// Fused optimizer updates, in place, one pass over each variable (Keras 3 update rules).
#include <pybind11/pybind11.h>

#include <cmath>

#include "broadcast.h"
#include "common.h"

namespace py = pybind11;

namespace lamina {

static void check_same(const char* op, const Buffer& var, const Buffer& other, const char* what) {
  check_dtype(op, what, other, F32);
  LAMINA_CHECK(other.numel == var.numel, op << ": " << what << " holds " << other.numel
                                            << " elements, the variable " << var.numel);
}

// var -= lr * g  (momentum == 0), else  v = momentum * v - lr * g;  var += v  (nesterov: var += momentum * v - lr * g)
static void sgd(Buffer& var, const Buffer& grad, Buffer& vel, double lr_d, double mom_d, bool nesterov) {
  check_dtype("sgd", "variable", var, F32);
  check_same("sgd", var, grad, "gradient");
  float* w = var.data<float>(); const float* g = grad.data<float>();
  const float lr = float(lr_d), mom = float(mom_d);
  if (mom == 0.f) {
    for_each_chunk(var.numel, [&](int64_t s, int64_t n) {
#pragma omp simd
      for (int64_t i = s; i < s + n; ++i) w[i] -= lr * g[i];
    });
    return;
  }
  check_same("sgd", var, vel, "velocity");
  float* v = vel.data<float>();
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) {
#pragma omp simd
    for (int64_t i = s; i < s + n; ++i) {
      float vi = mom * v[i] - lr * g[i];
      v[i] = vi;
      w[i] += nesterov ? mom * vi - lr * g[i] : vi;
    }
  });
}

// m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); vhat = max(vhat, v) (amsgrad);
// var -= lr_t * m / (sqrt(v or vhat) + eps); decoupled weight decay first: var -= var * wd_lr.
static void adam(Buffer& var, const Buffer& grad, Buffer& mb, Buffer& vb, Buffer& vhatb, double lr_t_d, double b1_d,
                 double b2_d, double eps_d, bool amsgrad, double wd_lr_d) {
  check_dtype("adam", "variable", var, F32);
  check_same("adam", var, grad, "gradient");
  check_same("adam", var, mb, "m");
  check_same("adam", var, vb, "v");
  if (amsgrad) check_same("adam", var, vhatb, "vhat");
  float* w = var.data<float>(); const float* g = grad.data<float>(); float* m = mb.data<float>(); float* v = vb.data<float>();
  float* vh = vhatb.data<float>();
  const float lr_t = float(lr_t_d), c1 = 1.f - float(b1_d), c2 = 1.f - float(b2_d), eps = float(eps_d), wd = float(wd_lr_d);
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) {
#pragma omp simd
    for (int64_t i = s; i < s + n; ++i) {
      float gi = g[i];
      float wi = w[i] - w[i] * wd;
      float mi = m[i] + (gi - m[i]) * c1;
      float vi = v[i] + (gi * gi - v[i]) * c2;
      m[i] = mi; v[i] = vi;
      float d = vi;
      if (amsgrad) { d = vh[i] > vi ? vh[i] : vi; vh[i] = d; }
      w[i] = wi - lr_t * mi / (std::sqrt(d) + eps);
    }
  });
}

// velocity = rho v + (1 - rho) g^2; centered: ag = rho ag + (1 - rho) g, denom = velocity - ag^2 + eps;
// else denom = velocity + eps. inc = lr g / sqrt(denom); momentum: mom = momentum * mom + inc; var -= mom.
static void rmsprop(Buffer& var, const Buffer& grad, Buffer& velb, Buffer& agb, Buffer& momb, double lr_d, double rho_d,
                    double momentum_d, double eps_d, bool centered) {
  check_dtype("rmsprop", "variable", var, F32);
  check_same("rmsprop", var, grad, "gradient");
  check_same("rmsprop", var, velb, "velocity");
  if (centered) check_same("rmsprop", var, agb, "average_gradient");
  if (momentum_d > 0) check_same("rmsprop", var, momb, "momentum");
  float* w = var.data<float>(); const float* g = grad.data<float>(); float* vel = velb.data<float>();
  float* ag = agb.data<float>(); float* mo = momb.data<float>();
  const float lr = float(lr_d), rho = float(rho_d), momentum = float(momentum_d), eps = float(eps_d);
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) {
    for (int64_t i = s; i < s + n; ++i) {
      float gi = g[i];
      float v = rho * vel[i] + (1.f - rho) * gi * gi;
      vel[i] = v;
      float denom = v + eps;
      if (centered) { float a = rho * ag[i] + (1.f - rho) * gi; ag[i] = a; denom = v - a * a + eps; }
      float inc = lr * gi / std::sqrt(denom);
      if (momentum > 0.f) { float mi = momentum * mo[i] + inc; mo[i] = mi; w[i] -= mi; }
      else w[i] -= inc;
    }
  });
}

// acc += g^2; var -= lr g / sqrt(acc + eps)
static void adagrad(Buffer& var, const Buffer& grad, Buffer& accb, double lr_d, double eps_d) {
  check_dtype("adagrad", "variable", var, F32);
  check_same("adagrad", var, grad, "gradient");
  check_same("adagrad", var, accb, "accumulator");
  float* w = var.data<float>(); const float* g = grad.data<float>(); float* a = accb.data<float>();
  const float lr = float(lr_d), eps = float(eps_d);
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) {
#pragma omp simd
    for (int64_t i = s; i < s + n; ++i) {
      float ai = a[i] + g[i] * g[i];
      a[i] = ai;
      w[i] -= lr * g[i] / std::sqrt(ai + eps);
    }
  });
}

// Sum of squares of a float32 buffer (accumulated in double), for gradient norms.
static double sum_squares(const Buffer& b) {
  check_dtype("sum_squares", "x", b, F32);
  const float* x = b.data<float>();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) if (b.numel > kParallelGrain)
  for (int64_t i = 0; i < b.numel; ++i) total += double(x[i]) * double(x[i]);
  return total;
}

void bind_optim(py::module_& m) {
  m.def("sgd", &sgd);
  m.def("adam", &adam);
  m.def("rmsprop", &rmsprop);
  m.def("adagrad", &adagrad);
  m.def("sum_squares", &sum_squares);
}

}  // namespace lamina
