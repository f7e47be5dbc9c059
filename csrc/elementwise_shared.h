// What the CPU's and the GPU's elementwise kernels (csrc/cpu/elementwise.cpp, csrc/cuda/elementwise.cu)
// compute the same way: the special functions in double, one element at a time (host code, and
// device code under nvcc), and clip's bounds.
#pragma once
#include <math.h>

#include <cmath>
#include <limits>
#include <type_traits>

#include "types.h"

namespace lamina {

// erfinv: Giles' single-precision approximation ("Approximating the erfinv function", 2010) as
// the start, then two Newton steps on erf(y) = x in double. For |x| > 1/2 the residual is formed
// from erfc and 1 - |x| (exact in double), so it keeps its accuracy up to |x| = 1 - 2^-24.
LAMINA_HD float erfinv_f(float xf) {
  const double x = xf;
  if (x != x) return xf;
  if (x >= 1.0 || x <= -1.0)
    return x == 1.0 ? INFINITY : (x == -1.0 ? -INFINITY : NAN);
  if (x == 0.0) return xf;  // keeps the sign of zero
  double w = -log((1.0 - x) * (1.0 + x)), p;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w;
    p = -3.5233877e-06 + p * w;
    p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
  } else {
    w = sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w;
    p = 0.00134934322 + p * w;
    p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;
    p = -0.0076224613 + p * w;
    p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;
    p = 2.83297682 + p * w;
  }
  double y = p * x;
  const double a = fabs(x);
  for (int it = 0; it < 2; ++it) {
    double ya = fabs(y);
    double r = a > 0.5 ? (1.0 - a) - erfc(ya) : erf(ya) - a;  // erf(|y|) - |x|
    double step = r / (1.1283791670955126 * exp(-y * y));
    y = x > 0 ? y - step : y + step;
  }
  return float(y);
}

// Modified Bessel functions of the first kind, orders 0 and 1, by their power series in double:
// I0(x) = sum (x^2/4)^k / (k!)^2, I1(x) = x/2 sum (x^2/4)^k / (k! (k+1)!). Every term is
// positive, so the sum has no cancellation; beyond |x| = 100 the float result is infinite.
LAMINA_HD float bessel_i(float xf, int order) {
  if (xf != xf) return xf;
  const double x = xf, ax = fabs(x);
  if (ax > 100.0) return order == 0 ? INFINITY : (x > 0 ? INFINITY : -INFINITY);
  const double q = 0.25 * x * x;
  double term = order == 0 ? 1.0 : 0.5 * x, sum = term;
  for (int k = 1; k < 1000; ++k) {
    term *= q / (double(k) * double(k + order));
    sum += term;
    if (fabs(term) <= 1e-17 * fabs(sum)) break;
  }
  return float(sum);
}

// A clip bound as T: integer tensors keep the integers inside [lo, hi] (a NaN bound does not bound;
// bounds beyond T's range saturate).
template <class T>
inline T clip_bound(double v, bool lower) {
  if constexpr (std::is_floating_point<T>::value) {
    return T(v);
  } else {
    if (v != v) return lower ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
    v = lower ? std::ceil(v) : std::floor(v);
    if (v <= double(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
    if (v >= double(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return T(v);
  }
}

}  // namespace lamina
