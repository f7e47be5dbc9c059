// Reductions and scans over one contiguous block of axes: the input is viewed as (outer, R, inner)
// and reduced (or scanned) over R. The Python side reduces non-adjacent axis groups one block at
// a time.
//
// Layouts: inner == 1 reduces rows (the last axis); inner > 1 reduces columns (axis 0 of (N, C),
// the bias gradient) in tiles of kTile columns, the inner loop running along contiguous memory.
// Both vectorise, and both split the reduced axis across threads when there are too few rows or
// tiles to keep every thread busy. Float sums accumulate in float over short blocks and add the
// block results in double, so that a sum of 10^6 floats is as accurate as numpy's pairwise sum.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common.h"
#include "device.h"
#include "opcodes.h"
#include "simd.h"

namespace py = pybind11;


namespace lamina {


// The reduction loops below are templates instantiated once per instruction set (GCC target
// attributes): <name>_generic / _avx2 / _avx512, and <name> picks one at run time.


constexpr int64_t kTile = 1024;    // columns per tile in column reductions and scans
constexpr int64_t kBlock = 4096;   // elements per float block in row reductions
constexpr int64_t kRowBlock = 64;  // rows per float block in column reductions

// Identity and combine for each op; max/min propagate NaN (once a NaN is in, it stays).
template <int OP, class A>
struct Red {
  LAMINA_INLINE static A init() {
    if constexpr (OP == R_MAX) {
      if constexpr (std::numeric_limits<A>::has_infinity) return -std::numeric_limits<A>::infinity();
      else return std::numeric_limits<A>::lowest();
    } else if constexpr (OP == R_MIN) {
      if constexpr (std::numeric_limits<A>::has_infinity) return std::numeric_limits<A>::infinity();
      else return std::numeric_limits<A>::max();
    } else if constexpr (OP == R_PROD) {
      return A(1);
    } else {
      return A(0);
    }
  }
  LAMINA_INLINE static A f(A a, A b) {
    if constexpr (OP == R_MAX) return (b > a || b != b) ? b : a;
    else if constexpr (OP == R_MIN) return (b < a || b != b) ? b : a;
    else if constexpr (OP == R_PROD) return a * b;
    else return a + b;
  }
};

// Accumulator types: Acc inside a block, Tot across blocks.
template <int OP, class T> struct AccT { using Acc = T; using Tot = T; };
template <int OP> struct AccT<OP, float> {
  using Acc = float;
  using Tot = std::conditional_t<OP == R_MAX || OP == R_MIN, float, double>;
};
// bfloat16 (held as uint16_t) reads each element widened to float32 (elem) and accumulates
// exactly as float32 does, so that the result before its one rounding is the widened path's.
template <int OP> struct AccT<OP, uint16_t> : AccT<OP, float> {};
template <int OP> struct AccT<OP, int32_t> {
  using Acc = std::conditional_t<OP == R_MAX || OP == R_MIN, int32_t, int64_t>;
  using Tot = Acc;
};

// An element as the accumulators read it: bfloat16 widened to float32, every other type as is.
template <class T>
LAMINA_INLINE T elem(T v) { return v; }
LAMINA_INLINE float elem(uint16_t h) { return bf16_to_f32(h); }

// Reduces x[0..n): kBlock-element blocks, each over L independent lanes (the vector accumulators),
// the block results combined in Tot.
template <int OP, class T, int L>
LAMINA_INLINE typename AccT<OP, T>::Tot reduce_row_body(const T* x, int64_t n) {
  using Acc = typename AccT<OP, T>::Acc;
  using Tot = typename AccT<OP, T>::Tot;
  using RA = Red<OP, Acc>;
  using RT = Red<OP, Tot>;
  Tot total = RT::init();
  for (int64_t s = 0; s < n; s += kBlock) {
    const int64_t m = std::min(kBlock, n - s);
    const T* p = x + s;
    Acc lane[L];
    for (int k = 0; k < L; ++k) lane[k] = RA::init();
    int64_t i = 0;
    for (; i + L <= m; i += L)
#pragma omp simd
      for (int k = 0; k < L; ++k) lane[k] = RA::f(lane[k], Acc(elem(p[i + k])));
    for (; i < m; ++i) lane[0] = RA::f(lane[0], Acc(elem(p[i])));
    for (int w = L / 2; w >= 1; w /= 2)
#pragma omp simd
      for (int k = 0; k < w; ++k) lane[k] = RA::f(lane[k], lane[k + w]);
    total = RT::f(total, Tot(lane[0]));
  }
  return total;
}

// tot[0..w) (op)= x[r, i0..i0+w) for r in [r0, r1), rows `inner` apart; four rows per pass.
template <int OP, class T>
LAMINA_INLINE void reduce_cols_body(const T* x, int64_t inner, int64_t w, int64_t r0, int64_t r1,
                                    typename AccT<OP, T>::Tot* tot) {
  using Acc = typename AccT<OP, T>::Acc;
  using Tot = typename AccT<OP, T>::Tot;
  using RA = Red<OP, Acc>;
  using RT = Red<OP, Tot>;
  Acc acc_s[kTile];
  Acc* acc = std::is_same_v<Acc, Tot> ? reinterpret_cast<Acc*>(tot) : acc_s;
  const int64_t rblock = std::is_same_v<Acc, Tot> ? (r1 - r0 + 1) : kRowBlock;
  for (int64_t i = 0; i < w; ++i) tot[i] = RT::init();
  for (int64_t rb = r0; rb < r1; rb += rblock) {
    const int64_t re = std::min(r1, rb + rblock);
    if (!std::is_same_v<Acc, Tot>)
      for (int64_t i = 0; i < w; ++i) acc[i] = RA::init();
    int64_t r = rb;
    for (; r + 4 <= re; r += 4) {
      const T* a = x + r * inner;
      const T* b = a + inner;
      const T* c = b + inner;
      const T* d = c + inner;
#pragma omp simd
      for (int64_t i = 0; i < w; ++i)
        acc[i] = RA::f(acc[i], RA::f(RA::f(Acc(elem(a[i])), Acc(elem(b[i]))), RA::f(Acc(elem(c[i])), Acc(elem(d[i])))));
    }
    for (; r < re; ++r) {
      const T* a = x + r * inner;
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) acc[i] = RA::f(acc[i], Acc(elem(a[i])));
    }
    if constexpr (!std::is_same_v<Acc, Tot>) {
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) tot[i] = RT::f(tot[i], Tot(acc[i]));
    }
  }
}

template <int OP, class T>
static typename AccT<OP, T>::Tot reduce_row_generic(const T* x, int64_t n) { return reduce_row_body<OP, T, 32>(x, n); }
template <int OP, class T>
static void reduce_cols_generic(const T* x, int64_t inner, int64_t w, int64_t r0, int64_t r1, typename AccT<OP, T>::Tot* tot) {
  reduce_cols_body<OP, T>(x, inner, w, r0, r1, tot);
}
#if LAMINA_X86
template <int OP, class T>
LAMINA_TARGET_AVX2 static typename AccT<OP, T>::Tot reduce_row_avx2(const T* x, int64_t n) {
  return reduce_row_body<OP, T, 32>(x, n);
}
template <int OP, class T>
LAMINA_TARGET_AVX2 static void reduce_cols_avx2(const T* x, int64_t inner, int64_t w, int64_t r0, int64_t r1,
                                                typename AccT<OP, T>::Tot* tot) {
  reduce_cols_body<OP, T>(x, inner, w, r0, r1, tot);
}
template <int OP, class T>
LAMINA_TARGET_AVX512 static typename AccT<OP, T>::Tot reduce_row_avx512(const T* x, int64_t n) {
  return reduce_row_body<OP, T, 64>(x, n);
}
template <int OP, class T>
LAMINA_TARGET_AVX512 static void reduce_cols_avx512(const T* x, int64_t inner, int64_t w, int64_t r0, int64_t r1,
                                                    typename AccT<OP, T>::Tot* tot) {
  reduce_cols_body<OP, T>(x, inner, w, r0, r1, tot);
}
#endif

template <int OP, class T>
static typename AccT<OP, T>::Tot reduce_row(const T* x, int64_t n) {
#if LAMINA_X86
  const int level = simd_level();
  if (level == 2) return reduce_row_avx512<OP, T>(x, n);
  if (level == 1) return reduce_row_avx2<OP, T>(x, n);
#endif
  return reduce_row_generic<OP, T>(x, n);
}
template <int OP, class T>
static void reduce_cols(const T* x, int64_t inner, int64_t w, int64_t r0, int64_t r1, typename AccT<OP, T>::Tot* tot) {
#if LAMINA_X86
  const int level = simd_level();
  if (level == 2) return reduce_cols_avx512<OP, T>(x, inner, w, r0, r1, tot);
  if (level == 1) return reduce_cols_avx2<OP, T>(x, inner, w, r0, r1, tot);
#endif
  reduce_cols_generic<OP, T>(x, inner, w, r0, r1, tot);
}

// The output value; bfloat16 (uint16_t): the float32 result, rounded once (to nearest even).
template <int OP, class T, class Tot>
static T finish(Tot v, int64_t R) {
  if constexpr (std::is_same_v<T, uint16_t>) {
    return f32_to_bf16(finish<OP, float>(v, R));
  } else if constexpr (OP == R_MEAN) {
    if (R == 0) return std::numeric_limits<T>::quiet_NaN();
    return T(v / Tot(R));
  } else {
    return T(v);
  }
}

// Splits [0, n) into `parts` pieces; piece k is [n k / parts, n (k+1) / parts).
static inline int64_t split_at(int64_t n, int64_t k, int64_t parts) { return n * k / parts; }

// y[o, i] = reduce_r x[o, r, i]
template <int OP, class T>
static void reduce_typed(const T* x, T* y, int64_t outer, int64_t R, int64_t inner) {
  using Tot = typename AccT<OP, T>::Tot;
  using RT = Red<OP, Tot>;
  const int64_t total = outer * R * inner;
  const int nt = total > kParallelGrain ? num_threads() : 1;
  if (outer * inner == 0) return;
  if (inner == 1) {
    // Rows. Few long rows: split each row into chunks, one partial result per chunk.
    int64_t chunks = 1;
    if (outer < nt) chunks = std::max<int64_t>(1, std::min<int64_t>((nt + outer - 1) / outer, R / 4096));
    if (chunks == 1) {
#pragma omp parallel for schedule(static) if (nt > 1 && outer > 1)
      for (int64_t o = 0; o < outer; ++o) y[o] = finish<OP, T>(reduce_row<OP>(x + o * R, R), R);
      return;
    }
    std::vector<Tot> part(size_t(outer * chunks));
#pragma omp parallel for schedule(static) if (nt > 1)
    for (int64_t it = 0; it < outer * chunks; ++it) {
      const int64_t o = it / chunks, c = it % chunks;
      const int64_t a = split_at(R, c, chunks), b = split_at(R, c + 1, chunks);
      part[size_t(it)] = reduce_row<OP>(x + o * R + a, b - a);
    }
    for (int64_t o = 0; o < outer; ++o) {
      Tot v = RT::init();
      for (int64_t c = 0; c < chunks; ++c) v = RT::f(v, part[size_t(o * chunks + c)]);
      y[o] = finish<OP, T>(v, R);
    }
    return;
  }
  // Columns, in tiles of kTile. Few tiles: also split R, then combine the partial rows.
  const int64_t tiles = (inner + kTile - 1) / kTile;
  const int64_t items = outer * tiles;
  int64_t rsplit = 1;
  if (items < nt) rsplit = std::max<int64_t>(1, std::min<int64_t>((nt + items - 1) / items, R / kRowBlock));
  std::vector<Tot> part;
  if (rsplit > 1) part.resize(size_t(rsplit * outer * inner));
#pragma omp parallel for schedule(static) if (nt > 1 && items * rsplit > 1)
  for (int64_t it = 0; it < items * rsplit; ++it) {
    const int64_t rc = it % rsplit, t = it / rsplit;
    const int64_t o = t / tiles, i0 = (t % tiles) * kTile, w = std::min(kTile, inner - i0);
    const int64_t r0 = split_at(R, rc, rsplit), r1 = split_at(R, rc + 1, rsplit);
    Tot tot[kTile];
    reduce_cols<OP>(x + o * R * inner + i0, inner, w, r0, r1, tot);
    if (rsplit == 1) {
      for (int64_t i = 0; i < w; ++i) y[o * inner + i0 + i] = finish<OP, T>(tot[i], R);
    } else {
      Tot* dst = part.data() + rc * outer * inner + o * inner + i0;
      for (int64_t i = 0; i < w; ++i) dst[i] = tot[i];
    }
  }
  if (rsplit > 1) {
    const int64_t n = outer * inner;
#pragma omp parallel for schedule(static) if (nt > 1 && n > 4096)
    for (int64_t j = 0; j < n; ++j) {
      Tot v = part[size_t(j)];
      for (int64_t rc = 1; rc < rsplit; ++rc) v = RT::f(v, part[size_t(rc * n + j)]);
      y[j] = finish<OP, T>(v, R);
    }
  }
}

template <class T>
static void reduce_dispatch(int op, const T* x, T* y, int64_t outer, int64_t R, int64_t inner) {
  switch (op) {
    case R_SUM: reduce_typed<R_SUM>(x, y, outer, R, inner); break;
    case R_MEAN:
      if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, uint16_t>) {
        reduce_typed<R_MEAN>(x, y, outer, R, inner);
        break;
      }
      LAMINA_CHECK(false, "reduce: mean needs a float32 tensor (or a bfloat16 one); cast integer tensors to float32 first");
      break;
    case R_MAX: reduce_typed<R_MAX>(x, y, outer, R, inner); break;
    case R_MIN: reduce_typed<R_MIN>(x, y, outer, R, inner); break;
    case R_PROD: reduce_typed<R_PROD>(x, y, outer, R, inner); break;
    default: LAMINA_CHECK(false, "reduce: unknown op code " << op);
  }
}

// y[o, i] = reduce_r x[o, r, i]
static void reduce(int op, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb) {
  check_extents("reduce", xb, outer, R, inner, yb, outer * inner);
  LAMINA_CHECK(op >= R_SUM && op <= R_ALL, "reduce: unknown op code " << op);
  if ((op == R_MAX || op == R_MIN) && R == 0 && outer * inner > 0)
    LAMINA_CHECK(false, "reduce: cannot take the max/min over an empty axis (a zero-size reduction has no identity)");
  if (op == R_ANY || op == R_ALL) {
    check_dtype("reduce", "x", xb, BOOL);
    check_dtype("reduce", "out", yb, BOOL);
    const uint8_t* x = xb.data<uint8_t>();
    uint8_t* y = yb.data<uint8_t>();
    if (R == 0) { std::memset(y, op == R_ALL, size_t(outer * inner)); return; }
    // any = max, all = min over the bytes; then normalise to 0 / 1
    if (op == R_ANY) reduce_typed<R_MAX>(x, y, outer, R, inner);
    else reduce_typed<R_MIN>(x, y, outer, R, inner);
    for (int64_t j = 0; j < outer * inner; ++j) y[j] = y[j] != 0;
    return;
  }
  check_dtype("reduce", "out", yb, xb.dtype);
  switch (xb.dtype) {
    case F32: reduce_dispatch<float>(op, xb.data<float>(), yb.data<float>(), outer, R, inner); break;
    case I32: reduce_dispatch<int32_t>(op, xb.data<int32_t>(), yb.data<int32_t>(), outer, R, inner); break;
    case I64: reduce_dispatch<int64_t>(op, xb.data<int64_t>(), yb.data<int64_t>(), outer, R, inner); break;
    case BF16: reduce_dispatch<uint16_t>(op, xb.data<uint16_t>(), yb.data<uint16_t>(), outer, R, inner); break;
    default: LAMINA_CHECK(false, "reduce: use any/all for bool tensors, or cast to int32 first");
  }
}

// ---- argmax / argmin ---------------------------------------------------------------------------
template <bool MAX, class T>
LAMINA_INLINE bool better(T v, T best) {
  // strictly better, or the first NaN (NaN wins, like numpy)
  if constexpr (std::is_floating_point_v<T>) return (MAX ? v > best : v < best) || (v != v && best == best);
  else return MAX ? v > best : v < best;
}

// Index of the first element equal to m (of the first NaN when m is NaN) in x[0..n), else n.
template <class T>
LAMINA_INLINE int64_t find_first_body(const T* x, int64_t n, T m) {
  const bool nan = m != m;
  for (int64_t s = 0; s < n; s += 512) {
    const int64_t e = std::min(n, s + 512);
    int hit = 0;
    if (nan) {
#pragma omp simd reduction(| : hit)
      for (int64_t i = s; i < e; ++i) hit |= x[i] != x[i];
    } else {
#pragma omp simd reduction(| : hit)
      for (int64_t i = s; i < e; ++i) hit |= x[i] == m;
    }
    if (hit)
      for (int64_t i = s; i < e; ++i)
        if (nan ? (x[i] != x[i]) : (x[i] == m)) return i;
  }
  return n;
}

// Column argmax / argmin over rows [1, R) of a tile: best[] and bi[] hold row 0 on entry.
template <bool MAX, class T>
LAMINA_INLINE void arg_cols_body(const T* base, int64_t inner, int64_t w, int64_t R, T* best, int64_t* bi) {
  for (int64_t r = 1; r < R; ++r) {
    const T* row = base + r * inner;
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) {
      const bool take = better<MAX>(row[i], best[i]);
      best[i] = take ? row[i] : best[i];
      bi[i] = take ? r : bi[i];
    }
  }
}

template <class T>
static int64_t find_first_generic(const T* x, int64_t n, T m) { return find_first_body(x, n, m); }
template <bool MAX, class T>
static void arg_cols_generic(const T* b, int64_t inner, int64_t w, int64_t R, T* best, int64_t* bi) {
  arg_cols_body<MAX>(b, inner, w, R, best, bi);
}
#if LAMINA_X86
template <class T>
LAMINA_TARGET_AVX2 static int64_t find_first_avx2(const T* x, int64_t n, T m) { return find_first_body(x, n, m); }
template <bool MAX, class T>
LAMINA_TARGET_AVX2 static void arg_cols_avx2(const T* b, int64_t inner, int64_t w, int64_t R, T* best, int64_t* bi) {
  arg_cols_body<MAX>(b, inner, w, R, best, bi);
}
template <class T>
LAMINA_TARGET_AVX512 static int64_t find_first_avx512(const T* x, int64_t n, T m) { return find_first_body(x, n, m); }
template <bool MAX, class T>
LAMINA_TARGET_AVX512 static void arg_cols_avx512(const T* b, int64_t inner, int64_t w, int64_t R, T* best, int64_t* bi) {
  arg_cols_body<MAX>(b, inner, w, R, best, bi);
}
#endif

template <class T>
static int64_t find_first(const T* x, int64_t n, T m) {
#if LAMINA_X86
  const int level = simd_level();
  if (level == 2) return find_first_avx512(x, n, m);
  if (level == 1) return find_first_avx2(x, n, m);
#endif
  return find_first_generic(x, n, m);
}
template <bool MAX, class T>
static void arg_cols(const T* b, int64_t inner, int64_t w, int64_t R, T* best, int64_t* bi) {
#if LAMINA_X86
  const int level = simd_level();
  if (level == 2) return arg_cols_avx512<MAX>(b, inner, w, R, best, bi);
  if (level == 1) return arg_cols_avx2<MAX>(b, inner, w, R, best, bi);
#endif
  arg_cols_generic<MAX>(b, inner, w, R, best, bi);
}

// index of the first extreme (first NaN for floats) of x[0..n), n > 0; its value in *val.
template <bool MAX, class T>
static int64_t arg_row(const T* x, int64_t n, T* val) {
  const T m = MAX ? T(reduce_row<R_MAX>(x, n)) : T(reduce_row<R_MIN>(x, n));
  *val = m;
  const int64_t i = find_first(x, n, m);
  return i < n ? i : 0;
}

template <bool MAX, class T>
static void arg_typed(const T* x, int64_t* y, int64_t outer, int64_t R, int64_t inner) {
  const int64_t total = outer * R * inner;
  const int nt = total > kParallelGrain ? num_threads() : 1;
  if (inner == 1) {
    int64_t chunks = 1;
    if (outer < nt) chunks = std::max<int64_t>(1, std::min<int64_t>((nt + outer - 1) / outer, R / 4096));
    std::vector<T> val(size_t(outer * chunks));
    std::vector<int64_t> idx(size_t(outer * chunks));
#pragma omp parallel for schedule(static) if (nt > 1 && outer * chunks > 1)
    for (int64_t it = 0; it < outer * chunks; ++it) {
      const int64_t o = it / chunks, c = it % chunks;
      const int64_t a = split_at(R, c, chunks), b = split_at(R, c + 1, chunks);
      idx[size_t(it)] = a + arg_row<MAX>(x + o * R + a, b - a, &val[size_t(it)]);
    }
    for (int64_t o = 0; o < outer; ++o) {
      T best = val[size_t(o * chunks)];
      int64_t bi = idx[size_t(o * chunks)];
      for (int64_t c = 1; c < chunks; ++c)
        if (better<MAX>(val[size_t(o * chunks + c)], best)) { best = val[size_t(o * chunks + c)]; bi = idx[size_t(o * chunks + c)]; }
      y[o] = bi;
    }
    return;
  }
  const int64_t tiles = (inner + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (nt > 1 && outer * tiles > 1)
  for (int64_t t = 0; t < outer * tiles; ++t) {
    const int64_t o = t / tiles, i0 = (t % tiles) * kTile, w = std::min(kTile, inner - i0);
    const T* base = x + o * R * inner + i0;
    T best[kTile];
    int64_t bi[kTile];
    for (int64_t i = 0; i < w; ++i) { best[i] = base[i]; bi[i] = 0; }
    arg_cols<MAX>(base, inner, w, R, best, bi);
    std::memcpy(y + o * inner + i0, bi, size_t(w) * sizeof(int64_t));
  }
}

// y[o, i] = argmax_r x[o, r, i] (first index on ties, first NaN wins), as int64.
static void argreduce(bool is_max, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb) {
  const char* op = is_max ? "argmax" : "argmin";
  check_extents(op, xb, outer, R, inner, yb, outer * inner);
  check_dtype(op, "out", yb, I64);
  if (outer * inner == 0) return;
  LAMINA_CHECK(R > 0, op << ": cannot reduce an empty axis");
  int64_t* y = yb.data<int64_t>();
  auto run = [&](auto* x) {
    if (is_max) arg_typed<true>(x, y, outer, R, inner);
    else arg_typed<false>(x, y, outer, R, inner);
  };
  switch (xb.dtype) {
    case F32: run(xb.data<float>()); break;
    case I32: run(xb.data<int32_t>()); break;
    case I64: run(xb.data<int64_t>()); break;
    case BOOL: run(xb.data<uint8_t>()); break;
    case I8: throw TypeError(std::string(op) + ": int8 tensors hold quantized weights and take no arithmetic");
    case BF16: throw TypeError(std::string(op) + ": this kernel takes no bfloat16 (the device table runs it on float32 copies)");
  }
}

// ---- cumulative sums and products --------------------------------------------------------------

// y[o, r, i] = x[o, 0, i] (op) ... (op) x[o, r, i] (from the end when `reverse`). Float scans
// accumulate in double; integer scans in int64 (wrapping like the output type).
template <int OP, class T>
static void scan_typed(const T* x, T* y, int64_t outer, int64_t R, int64_t inner, bool reverse) {
  using A = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
  const int64_t tiles = (inner + kTile - 1) / kTile;
  const int nt = outer * R * inner > kParallelGrain ? num_threads() : 1;
#pragma omp parallel for schedule(static) if (nt > 1 && outer * tiles > 1)
  for (int64_t t = 0; t < outer * tiles; ++t) {
    const int64_t o = t / tiles, i0 = (t % tiles) * kTile, w = std::min(kTile, inner - i0);
    A acc[kTile];
    for (int64_t i = 0; i < w; ++i) acc[i] = OP == S_SUM ? A(0) : A(1);
    for (int64_t k = 0; k < R; ++k) {
      const int64_t r = reverse ? R - 1 - k : k;
      const int64_t off = (o * R + r) * inner + i0;
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) {
        if constexpr (OP == S_SUM) acc[i] += A(x[off + i]);
        else acc[i] *= A(x[off + i]);
        y[off + i] = T(acc[i]);
      }
    }
  }
}

static void cumulative(int op, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb, bool reverse) {
  check_extents("cumulative", xb, outer, R, inner, yb, outer * R * inner);
  check_dtype("cumulative", "out", yb, xb.dtype);
  LAMINA_CHECK(op == S_SUM || op == S_PROD, "cumulative: unknown op code " << op << "; expected 0 (sum) or 1 (prod)");
  auto run = [&](auto* x, auto* y) {
    if (op == S_SUM) scan_typed<S_SUM>(x, y, outer, R, inner, reverse);
    else scan_typed<S_PROD>(x, y, outer, R, inner, reverse);
  };
  switch (xb.dtype) {
    case F32: run(xb.data<float>(), yb.data<float>()); break;
    case I32: run(xb.data<int32_t>(), yb.data<int32_t>()); break;
    case I64: run(xb.data<int64_t>(), yb.data<int64_t>()); break;
    default: LAMINA_CHECK(false, "cumulative: bool tensors need a cast to int64 first");
  }
}

// Gradient of y = cumprod(x) along R given g = dL/dy, without dividing by x (exact with zeros):
// dL/dx_r = P_(r-1) S_r, where P_(r-1) = x_0 ... x_(r-1) and S_r = g_r + x_(r+1) S_(r+1).
static void cumprod_grad(const Buffer& xb, const Buffer& gb, int64_t outer, int64_t R, int64_t inner, Buffer& ob) {
  check_extents("cumprod_grad", xb, outer, R, inner, ob, outer * R * inner);
  check_dtype("cumprod_grad", "x", xb, F32);
  check_dtype("cumprod_grad", "grad", gb, F32);
  check_dtype("cumprod_grad", "out", ob, F32);
  LAMINA_CHECK(gb.numel == xb.numel, "cumprod_grad: grad holds " << gb.numel << " elements, x " << xb.numel);
  const float* x = xb.data<float>();
  const float* g = gb.data<float>();
  float* out = ob.data<float>();
  const int64_t tiles = (inner + kTile - 1) / kTile;
  const int nt = outer * R * inner > kParallelGrain ? num_threads() : 1;
#pragma omp parallel for schedule(static) if (nt > 1 && outer * tiles > 1)
  for (int64_t t = 0; t < outer * tiles; ++t) {
    const int64_t o = t / tiles, i0 = (t % tiles) * kTile, w = std::min(kTile, inner - i0);
    double p[kTile], s[kTile];
    for (int64_t i = 0; i < w; ++i) { p[i] = 1.0; s[i] = 0.0; }
    for (int64_t r = 0; r < R; ++r) {  // out = exclusive prefix product
      const int64_t off = (o * R + r) * inner + i0;
      for (int64_t i = 0; i < w; ++i) { out[off + i] = float(p[i]); p[i] *= double(x[off + i]); }
    }
    for (int64_t r = R - 1; r >= 0; --r) {
      const int64_t off = (o * R + r) * inner + i0;
      for (int64_t i = 0; i < w; ++i) {
        const double xn = r + 1 < R ? double(x[off + inner + i]) : 0.0;
        s[i] = double(g[off + i]) + xn * s[i];
        out[off + i] = float(double(out[off + i]) * s[i]);
      }
    }
  }
}

void bind_reduce(py::module_& m) {
  def_kernel(m, "reduce", &reduce);
  def_kernel(m, "argreduce", &argreduce);
  def_kernel(m, "cumulative", &cumulative, py::arg("op"), py::arg("x"), py::arg("outer"), py::arg("R"), py::arg("inner"),
        py::arg("out"), py::arg("reverse") = false);
  def_kernel(m, "cumprod_grad", &cumprod_grad);
}

}  // namespace lamina
