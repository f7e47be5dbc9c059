// int8 matrix products for quantized inference (Keras 3's "int8" mode):
//   out[i, j] = float(sum_k qa[i, k] * qw[k, j]) / (w_scale[j] * a_scale[i]) + bias[j]
// qw: int8 weights (K x N, per-output-column scales w_scale, made when the layer is quantized);
// qa: each row of the float input quantized on the fly, Keras's AbsMaxQuantizer(axis=-1):
//   a_scale[i] = 127 / (max_k |a[i, k]| + 1e-7),  qa[i, k] = clip(round_half_even(a[i, k] * a_scale[i]), -127, 127)
// with int32 accumulation. Every step is the float32 arithmetic Keras does, so the results equal
// Keras's bit for bit.
//
// The weights are packed once (qgemm_pack) into column panels of QNR columns and groups of 4 k:
// panel p, group g holds qw[4g .. 4g+3, p*QNR .. p*QNR+QNR-1] as [column][4 bytes], zero padded,
// plus the column sums of qw (the kernels feed the activations to VNNI's unsigned x signed
// product as qa + 128 and subtract 128 * colsum afterwards).
// The layout is csrc/quant_checks.h's (quant::packed_bytes), which the CUDA module packs too.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include <vector>

namespace lamina {
struct Buffer;
namespace qgemm {

constexpr int QNR = 32;  // columns per packed panel

// Bytes of the packed weights of a K x N matrix.
int64_t packed_bytes(int64_t K, int64_t N);

// Packs qw (K x N, row-major int8) and writes its column sums (N int32).
void pack(const int8_t* qw, int64_t K, int64_t N, int8_t* packed, int32_t* colsum);

// out (M x N, row stride ldo) = the quantized product of a (M x K float, row stride lda) with the
// packed weights; bias may be null; `relu` applies max(out, 0) (NaN kept) in the same pass.
// Parallel over rows when `parallel` (and the product is big).
void matmul(const float* a, int64_t lda, int64_t M, int64_t K, int64_t N, const int8_t* packed,
            const int32_t* colsum, const float* w_scale, const float* bias, float* out, int64_t ldo, bool parallel,
            bool relu = false);

// What the fused quantized convolutions (quantized inference of Conv / BatchNormalization / ReLU
// groups, backend/quantization.py) do with the int32 sums r[i, j] of a product, after the
// zero-point correction:
//   v = float(r) / (w_scale[j] * a_scale[i]);  v += bias[j];  v = v * A[j] + D[j];  v = clamp(v, lo, hi)
// (each step only where given; the clamp keeps NaN), stored as float (out_f) or as unsigned bytes
// (out_u8) q = min(max(round_half_even(v * out_mul), 0), 255). Where v is NaN and `flags` is
// given, flags[(flag_row0 + row) / rows_per_flag] is set (the image's "not a number" mark: bytes have no
// NaN, the last float group writes NaN over a marked image).
struct Epilogue {
  const float* w_scale = nullptr;
  const float* bias = nullptr;
  const float* A = nullptr;
  const float* D = nullptr;
  float lo = -INFINITY, hi = INFINITY;
  float* out_f = nullptr;
  uint8_t* out_u8 = nullptr;
  int64_t ldo = 0;
  float out_mul = 1.f;
  // Folded form (the fused kernels): v = float(r) * (F[j] / a_scale[i]) + G[j], one multiply-add
  // for the division, the bias and the normalization (F = A / w_scale, G = bias * A + D).
  const float* F = nullptr;
  const float* G = nullptr;
  int32_t* flags = nullptr;
  int64_t rows_per_flag = 1;
  int64_t flag_row0 = 0;  // the global row of the product's row 0 (a chunk of a convolution)
};

// The rows of a convolution's im2col matrix read straight from an image quantized as a whole:
// x holds q + 128 (bytes, channels last) for q = the image's values quantized with one scale per
// image (scale[n], Keras's abs-max formula over the image); row (n, oh, ow) is the window of
// output pixel (oh, ow) of image n, in (kh, kw, c) order (conv_windows pads the image first).
// Hp, Wp > 0: x is padded to (Hp, Wp) (the image at (pt, pl), 128 around it), every window
// inside, and the tiles read the windows in place.
// PH x PW > 1: a max pooling of that window and stride (padding "valid") follows: the rows are the
// PH * PW pixels of each pooled pixel in turn (pooled pixels (n, ph, pw) in row-major order, the
// last OH % PH rows and OW % PW columns left out), and the epilogue's output has one row per
// pooled pixel: the maximum of its PH * PW rows after the epilogue (NaN if any is NaN).
struct ImageRows {
  const uint8_t* x = nullptr;
  const uint16_t* x16 = nullptr;  // the same bytes widened to 16 bits (the AVX2 kernel's)
  const float* scale = nullptr;
  int64_t H = 0, W = 0, C = 0, KH = 0, KW = 0, OH = 0, OW = 0, sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0;
  int64_t Hp = 0, Wp = 0;
  int64_t PH = 1, PW = 1;
};

// The quantized convolution of `images` float images x (H, W, C each, channels last; the
// geometry in `g`, its x, scale, Hp and Wp unused) with the packed weights (K = KH * KW * C rows),
// images * OH * OW output rows through the epilogue (or images * (OH / PH) * (OW / PW) pooled
// ones, float output only): each image quantized once (one abs-max scale per image) into a
// padded copy, then each window read from the bytes (in place where the VNNI or AVX2 kernel runs
// and C % 4 == 0, dilation 1 along the width; else copied into the product's tiles): no im2col
// matrix.
void conv_windows(const float* x, int64_t images, const ImageRows& g, int64_t K, int64_t N, const int8_t* packed,
                  const int32_t* colsum, const Epilogue& e, bool parallel);

// The quantized product with a general epilogue: `a` float rows quantized on the fly as in
// matmul, or (matmul_u8) unsigned bytes standing for a * a_step (a zero point of 0, the
// activations a fused group wrote), whose sums need no correction.
void matmul_epi(const float* a, int64_t lda, int64_t M, int64_t K, int64_t N, const int8_t* packed,
                const int32_t* colsum, const Epilogue& e, bool parallel);
void matmul_u8(const uint8_t* a, int64_t lda, float a_step, int64_t M, int64_t K, int64_t N, const int8_t* packed,
               const Epilogue& e, bool parallel);

// The epilogue of a fused quantized convolution from its kernel arguments, checked (quantize.cpp):
// C output channels; w_scale (C), bias, the BatchNormalization's mean / variance / gamma / beta
// (C each, or null: no BatchNormalization; gamma and beta may be null alone), the clamp [lo, hi],
// out (`out_numel` float32 values, or int8 buffer of bytes when out_step > 0: q * out_step),
// flags (`images` int32, or null). A and D hold its folded F and G (the scales, bias and BatchNormalization).
Epilogue fused_epilogue(const char* op, int64_t C, const Buffer& w_scale, const Buffer* bias, const Buffer* bn_mean,
                        const Buffer* bn_var, const Buffer* bn_gamma, const Buffer* bn_beta, double bn_eps, double lo,
                        double hi, Buffer& out, int64_t out_numel, double out_step, Buffer* flags, int64_t images,
                        std::vector<float>& A, std::vector<float>& D);

// A[j], D[j] of an inference BatchNormalization (as batch_norm_infer): A = gamma / sqrt(var + eps),
// D = beta - mean * A (gamma, beta may be null: 1 and 0).
void bn_affine(const float* mean, const float* var, const float* gamma, const float* beta, double eps, int64_t C,
               float* A, float* D);

// Writes NaN over every value of each image n (`per_image` floats) whose flags[n] is set.
void poison_images(float* out, int64_t images, int64_t per_image, const int32_t* flags);

// The epilogue's last steps on one value (shared by the scalar kernels): the clamp to [lo, hi]
// (NaN kept), and a byte output's q = clamp(round_half_even(v * out_mul), 0, 255), NaN -> 0 (its
// image is flagged by the caller).
inline float clamp_keep_nan(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}
inline uint8_t to_byte(float v, float out_mul) {
  const float q = std::nearbyint(v * out_mul);
  return uint8_t(int(q > 0.f ? (q < 255.f ? q : 255.f) : 0.f));
}

// One sum through the epilogue (the scalar form of the kernels' vector code).
inline void epilogue_store(const Epilogue& e, int32_t r, float a_scale, int64_t row, int64_t j) {
  float v;
  if (e.F) {
    v = float(r) * (e.F[j] * (1.f / a_scale)) + e.G[j];
  } else {
    v = float(r) / (e.w_scale[j] * a_scale);
    if (e.bias) v += e.bias[j];
    if (e.A) v = v * e.A[j] + e.D[j];
  }
  v = clamp_keep_nan(v, e.lo, e.hi);
  if (e.out_u8) {
    if (v != v && e.flags) __atomic_store_n(e.flags + (e.flag_row0 + row) / e.rows_per_flag, 1, __ATOMIC_RELAXED);
    e.out_u8[row * e.ldo + j] = to_byte(v, e.out_mul);
  } else {
    e.out_f[row * e.ldo + j] = v;
  }
}

// The micro-kernel in use ("vnni": AVX-512 VNNI, "avxvnni": 256-bit AVX-VNNI, "avx2", "generic":
// portable C++) and a switch for tests.
std::string kernel_name();
void set_kernel(const std::string& name);

}  // namespace qgemm
}  // namespace lamina
