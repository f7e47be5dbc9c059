// Discrete Fourier transforms of any length, batched: csrc/cpu/fft.cpp's fft, rfft and irfft with
// the same arguments, checks (csrc/fft_checks.h), algorithms and precision.
//
// Each row is transformed in double precision with double twiddles w[k] = exp(-2 pi i k / n),
// computed by the CPU's formula: mixed-radix Cooley-Tukey with the CPU's radices (4s, then 2, 3, 5,
// 7, 11, 13: fft_small_factors) when every prime factor of the length is at most 13, Bluestein's
// chirp-z algorithm (two power-of-two transforms of length m >= 2 n - 1) otherwise. The CPU's
// recursive decimation in time is run iteratively: the row is loaded in digit-reversed order, then
// the combining stages run from the last radix to the first, each butterfly the CPU's (the same
// products, sums and order; complex products without fused multiply-adds, as the CPU's), so the
// results differ from the CPU's only through the last bits of the device's cos / sin.
//
// One block per row (grid-stride over the rows): the row's complex doubles sit in a per-block slot
// of a global workspace, the block's threads share out each stage's butterflies, __syncthreads
// between stages. The tables (twiddles; Bluestein's chirp and the transform of its kernel) are made
// on the device for each call, as the CPU makes its plan for each call.
#include "fft.h"

#include <vector>

#include "../fft_checks.h"

namespace lamina {
namespace gpu {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kMaxFactors = 64;                 // a length below 2^63 has fewer radices
constexpr int64_t kWorkBytes = int64_t(1) << 27;  // the row workspaces of one call: at most 128 MiB (at least one row)

struct Cx {
  double re, im;
};

// std::complex<double>'s arithmetic for finite values, with explicit roundings (no contraction
// into fused multiply-adds, which the CPU build does not make either).
__device__ __forceinline__ Cx cadd(Cx a, Cx b) { return Cx{__dadd_rn(a.re, b.re), __dadd_rn(a.im, b.im)}; }
__device__ __forceinline__ Cx csub(Cx a, Cx b) { return Cx{__dsub_rn(a.re, b.re), __dsub_rn(a.im, b.im)}; }
__device__ __forceinline__ Cx cmul(Cx a, Cx b) {
  return Cx{__dsub_rn(__dmul_rn(a.re, b.re), __dmul_rn(a.im, b.im)),
            __dadd_rn(__dmul_rn(a.re, b.im), __dmul_rn(a.im, b.re))};
}
__device__ __forceinline__ Cx cscale(Cx a, double s) { return Cx{__dmul_rn(a.re, s), __dmul_rn(a.im, s)}; }
__device__ __forceinline__ Cx cconj(Cx a) { return Cx{a.re, -a.im}; }

// A transform length and its Cooley-Tukey radices (the CPU plan's factors).
struct Factors {
  int64_t n = 0;
  int count = 0;
  int64_t p[kMaxFactors];
};

Factors make_factors(int64_t n, const std::vector<int64_t>& f) {
  Factors F;
  F.n = n;
  F.count = int(f.size());
  for (size_t j = 0; j < f.size(); ++j) F.p[j] = f[j];
  return F;
}

// Where the CPU's recursion (dft_rec) leaves input t before the combining stages: t = q0 + p0 (q1
// + p1 (q2 + ...)) goes to q0 m0 + q1 m1 + ..., m_j = n / (p0 ... p_j).
__device__ __forceinline__ int64_t digit_reverse(int64_t t, const Factors& F) {
  int64_t pos = 0, rem = t, mj = F.n;
  for (int j = 0; j < F.count; ++j) {
    const int64_t p = F.p[j];
    mj /= p;
    pos += (rem % p) * mj;
    rem /= p;
  }
  return pos;
}

// dft_rec's combining step for radix p: the sub-transforms at o[0], o[m], ..., o[(p - 1) m] (index k
// of each) become outputs k, m + k, ..., (p - 1) m + k; w is the base table of length N, ws = N / (p m).
__device__ __forceinline__ void butterfly(Cx* o, int64_t m, int64_t k, int64_t p, int64_t ws, const Cx* w) {
  Cx tmp[kFftMaxRadix];
  tmp[0] = o[0];
  for (int64_t q = 1; q < p; ++q) tmp[q] = cmul(o[q * m], w[q * k * ws]);
  if (p == 2) {
    o[0] = cadd(tmp[0], tmp[1]);
    o[m] = csub(tmp[0], tmp[1]);
  } else if (p == 4) {  // w_4 = -i
    const Cx a = cadd(tmp[0], tmp[2]), b = csub(tmp[0], tmp[2]), c = cadd(tmp[1], tmp[3]);
    const Cx d = cmul(csub(tmp[1], tmp[3]), Cx{0.0, -1.0});
    o[0] = cadd(a, c);
    o[m] = cadd(b, d);
    o[2 * m] = csub(a, c);
    o[3 * m] = csub(b, d);
  } else {
    for (int64_t r = 0; r < p; ++r) {
      Cx acc = tmp[0];
      for (int64_t q = 1; q < p; ++q) acc = cadd(acc, cmul(tmp[q], w[(q * r % p) * m * ws]));
      o[r * m] = acc;
    }
  }
}

// The forward transform of the F.n points at d, loaded in digit-reversed order, in place: the
// stages of dft_rec from the deepest (the last radix) up, the block's threads sharing each stage's
// n / p butterflies. Every thread of the block calls it; it ends with a barrier.
__device__ void block_stages(Cx* d, const Factors& F, const Cx* w) {
  const int64_t n = F.n;
  int64_t nj = 1;  // the sub-transform length after this stage
  for (int j = F.count - 1; j >= 0; --j) {
    const int64_t p = F.p[j], m = nj;
    nj *= p;
    const int64_t ws = n / nj, count = n / p;
    for (int64_t b = threadIdx.x; b < count; b += blockDim.x) {
      const int64_t k = b % m;
      butterfly(d + (b / m) * nj + k, m, k, p, ws, w);
    }
    __syncthreads();
  }
}

// w[k] = exp(-2 pi i k / n), the CPU plan's table.
__global__ void twiddles(Cx* w, int64_t n) {
  GRID_STRIDE(k, n) {
    const double a = -2.0 * kPi * double(k) / double(n);
    w[k] = Cx{cos(a), sin(a)};
  }
}

// t^2 mod mod, exactly (mod < 2^63).
__device__ __forceinline__ int64_t square_mod(int64_t t, int64_t mod) {
  const uint64_t um = uint64_t(mod);
  uint64_t b = uint64_t(t);
  if (b < (uint64_t(1) << 32)) return int64_t(b * b % um);
  uint64_t a = b % um, r = 0;
  for (; b; b >>= 1) {
    if (b & 1) {
      r += a;
      if (r >= um) r -= um;
    }
    a += a;
    if (a >= um) a -= um;
  }
  return int64_t(r);
}

// Bluestein's chirp exp(-i pi t^2 / n), the angle reduced exactly modulo 2 pi.
__global__ void chirps(Cx* chirp, int64_t n) {
  GRID_STRIDE(t, n) {
    const int64_t t2 = square_mod(t, 2 * n);
    const double a = -kPi * double(t2) / double(n);
    chirp[t] = Cx{cos(a), sin(a)};
  }
}

// One block: the transform (length M.n = m) of the conjugate chirp kernel b (b[0] = conj(chirp[0]),
// b[t] = b[m - t] = conj(chirp[t]) for 0 < t < n, zero between).
__global__ void __launch_bounds__(256) chirp_kernel(Cx* khat, const Cx* chirp, int64_t n, Factors M, const Cx* wm) {
  const int64_t m = M.n;
  for (int64_t s = threadIdx.x; s < m; s += blockDim.x) {
    Cx v{0.0, 0.0};
    if (s < n) v = cconj(chirp[s]);
    else if (m - s < n) v = cconj(chirp[m - s]);
    khat[digit_reverse(s, M)] = v;
  }
  __syncthreads();
  block_stages(khat, M, wm);
}

// ---- the rows of each op: what a row's transform reads (point t of row r) and writes ----------

// fft: (outer, n, inner), rows r = o * inner + i; the inverse as the conjugate of the forward
// transform of the conjugate.
struct FftIO {
  const float* R;
  const float* I;  // null: a real input
  float* OR;
  float* OI;
  int64_t n, inner;
  double sgn, scale;
  int64_t out_count;  // n
  __device__ __forceinline__ int64_t at(int64_t r, int64_t t) const {
    return (r / inner) * n * inner + r % inner + t * inner;
  }
  __device__ __forceinline__ Cx load(int64_t r, int64_t t) const {
    const int64_t k = at(r, t);
    return Cx{double(R[k]), I ? sgn * I[k] : 0.0};
  }
  __device__ __forceinline__ void store(int64_t r, int64_t t, Cx v) const {
    const int64_t k = at(r, t);
    OR[k] = float(v.re * scale);
    OI[k] = float(sgn * v.im * scale);
  }
};

// rfft: rows of n_in samples, the first `used` taken, zeros up to fft_length; h bins out.
struct RfftIO {
  const float* X;
  float* OR;
  float* OI;
  int64_t n_in, used;
  double scale;
  int64_t out_count;  // h = fft_length / 2 + 1
  __device__ __forceinline__ Cx load(int64_t r, int64_t t) const {
    return t < used ? Cx{double(X[r * n_in + t]), 0.0} : Cx{0.0, 0.0};
  }
  __device__ __forceinline__ void store(int64_t r, int64_t t, Cx v) const {
    OR[r * out_count + t] = float(v.re * scale);
    OI[r * out_count + t] = float(v.im * scale);
  }
};

// irfft: the conjugated Hermitian spectrum of length n from the first `used` of m_in bins (the
// imaginary parts of the zero and Nyquist bins dropped); the real part out.
struct IrfftIO {
  const float* R;
  const float* I;
  float* O;
  int64_t m_in, n, used;
  double scale;
  int64_t out_count;  // n
  __device__ __forceinline__ Cx bin(int64_t r, int64_t k) const {
    const bool real_only = k == 0 || (n % 2 == 0 && k == n / 2);
    return Cx{double(R[r * m_in + k]), real_only ? 0.0 : -double(I[r * m_in + k])};
  }
  __device__ __forceinline__ Cx load(int64_t r, int64_t t) const {
    if (t < used) return bin(r, t);
    const int64_t k = n - t;  // t = n - k holds conj(bin k) for 0 < k < used, k != n - k
    if (k > 0 && k < used && k != t) return cconj(bin(r, k));
    return Cx{0.0, 0.0};
  }
  __device__ __forceinline__ void store(int64_t r, int64_t t, Cx v) const { O[r * n + t] = float(v.re * scale); }
};

// Mixed radix: block b transforms rows b, b + gridDim.x, ... in its slot of F.n points.
template <class IO>
__global__ void __launch_bounds__(256) fft_rows(IO io, int64_t rows, Factors F, const Cx* w, Cx* work) {
  const int64_t n = F.n;
  Cx* d = work + int64_t(blockIdx.x) * n;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    for (int64_t t = threadIdx.x; t < n; t += blockDim.x) d[digit_reverse(t, F)] = io.load(r, t);
    __syncthreads();
    block_stages(d, F, w);
    for (int64_t t = threadIdx.x; t < io.out_count; t += blockDim.x) io.store(r, t, d[t]);
    __syncthreads();  // the slot is read before the next row overwrites it
  }
}

// Bluestein (the CPU's transform with plan.m > 0): a = x chirp zero-padded to m, A = F(a),
// b = conj(A khat), B = F(b), x_k = conj(B_k) / m chirp_k. Each block's slot holds 2 m points.
template <class IO>
__global__ void __launch_bounds__(256) bluestein_rows(IO io, int64_t rows, int64_t n, Factors M, const Cx* wm,
                                                      const Cx* chirp, const Cx* khat, Cx* work) {
  const int64_t m = M.n;
  Cx* a = work + int64_t(blockIdx.x) * 2 * m;
  Cx* b = a + m;
  const double inv_m = 1.0 / double(m);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    for (int64_t t = threadIdx.x; t < m; t += blockDim.x)
      a[digit_reverse(t, M)] = t < n ? cmul(io.load(r, t), chirp[t]) : Cx{0.0, 0.0};
    __syncthreads();
    block_stages(a, M, wm);
    for (int64_t k = threadIdx.x; k < m; k += blockDim.x) b[digit_reverse(k, M)] = cconj(cmul(a[k], khat[k]));
    __syncthreads();
    block_stages(b, M, wm);  // the inverse by conjugation
    for (int64_t k = threadIdx.x; k < io.out_count; k += blockDim.x)
      io.store(r, k, cmul(cscale(cconj(b[k]), inv_m), chirp[k]));
    __syncthreads();
  }
}

// Threads of a block for transforms of `len` points: a warp multiple, about one per butterfly.
int threads_for(int64_t len) {
  int t = 32;
  while (t < 256 && t < len / 2) t *= 2;
  return t;
}

// Blocks for `rows` rows of `per_row` complex doubles of workspace each.
int64_t blocks_for(int64_t rows, int64_t per_row) {
  int64_t cap = kWorkBytes / (per_row * int64_t(sizeof(Cx)));
  cap = cap < 1 ? 1 : (cap > 65535 ? 65535 : cap);
  return rows < cap ? rows : cap;
}

// A buffer of `count` complex doubles (16 bytes each: two int64 elements).
Cx* complex_ptr(const Buffer& b) { return static_cast<Cx*>(b.ptr); }

// Transforms `rows` rows of length n through io (the CPU's make_plan + transform for each row).
template <class IO>
void run_rows(Context& c, const char* op, const IO& io, int64_t rows, int64_t n) {
  if (rows == 0) return;
  bool smooth;
  const std::vector<int64_t> f = fft_small_factors(n, &smooth);
  if (smooth) {
    const Factors F = make_factors(n, f);
    Buffer tw(2 * n, I64, c.index);
    twiddles<<<grid_for(n), 256, 0, c.stream>>>(complex_ptr(tw), n);
    const int64_t G = blocks_for(rows, n);
    Buffer work(2 * G * n, I64, c.index);
    fft_rows<IO><<<unsigned(G), threads_for(n), 0, c.stream>>>(io, rows, F, complex_ptr(tw), complex_ptr(work));
  } else {
    const int64_t m = fft_bluestein_length(n);
    bool m_smooth;
    const Factors M = make_factors(m, fft_small_factors(m, &m_smooth));
    Buffer tab(2 * (2 * m + n), I64, c.index);  // w_m (m), the kernel's transform (m), the chirp (n)
    Cx* wm = complex_ptr(tab);
    Cx* khat = wm + m;
    Cx* chirp = khat + m;
    twiddles<<<grid_for(m), 256, 0, c.stream>>>(wm, m);
    chirps<<<grid_for(n), 256, 0, c.stream>>>(chirp, n);
    chirp_kernel<<<1, threads_for(m), 0, c.stream>>>(khat, chirp, n, M, wm);
    const int64_t G = blocks_for(rows, 2 * m);
    Buffer work(2 * G * 2 * m, I64, c.index);
    bluestein_rows<IO><<<unsigned(G), threads_for(m), 0, c.stream>>>(io, rows, n, M, wm, chirp, khat,
                                                                       complex_ptr(work));
  }
  launched(c, op);
}

}  // namespace

void fft(const Buffer& xr, const Buffer* xi, int64_t outer, int64_t n, int64_t inner, bool inverse, double scale,
         Buffer& out_r, Buffer& out_i) {
  check_fft_args(xr, xi, outer, n, inner, out_r, out_i);
  Context& c = op_device("fft", {&xr, xi, &out_r, &out_i});
  FftIO io;
  io.R = xr.data<float>();
  io.I = xi ? xi->data<float>() : nullptr;
  io.OR = out_r.data<float>();
  io.OI = out_i.data<float>();
  io.n = n;
  io.inner = inner;
  io.sgn = inverse ? -1.0 : 1.0;
  io.scale = scale;
  io.out_count = n;
  run_rows(c, "fft", io, outer * inner, n);
}

void rfft(const Buffer& x, int64_t outer, int64_t n_in, int64_t fft_length, double scale, Buffer& out_r,
          Buffer& out_i) {
  check_rfft_args(x, outer, n_in, fft_length, out_r, out_i);
  Context& c = op_device("rfft", {&x, &out_r, &out_i});
  RfftIO io;
  io.X = x.data<float>();
  io.OR = out_r.data<float>();
  io.OI = out_i.data<float>();
  io.n_in = n_in;
  io.used = n_in < fft_length ? n_in : fft_length;
  io.scale = scale;
  io.out_count = fft_length / 2 + 1;
  run_rows(c, "rfft", io, outer, fft_length);
}

void irfft(const Buffer& xr, const Buffer& xi, int64_t outer, int64_t m_in, int64_t fft_length, double scale,
           Buffer& out) {
  check_irfft_args(xr, xi, outer, m_in, fft_length, out);
  Context& c = op_device("irfft", {&xr, &xi, &out});
  const int64_t h = fft_length / 2 + 1;
  IrfftIO io;
  io.R = xr.data<float>();
  io.I = xi.data<float>();
  io.O = out.data<float>();
  io.m_in = m_in;
  io.n = fft_length;
  io.used = m_in < h ? m_in : h;
  io.scale = scale;
  io.out_count = fft_length;
  run_rows(c, "irfft", io, outer, fft_length);
}

}  // namespace gpu
}  // namespace lamina
