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
#pragma once
#include <cstdint>
#include <string>

namespace lamina {
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

// The micro-kernel in use ("vnni": AVX-512 VNNI, "generic": portable C++) and a switch for tests.
std::string kernel_name();
void set_kernel(const std::string& name);

}  // namespace qgemm
}  // namespace lamina
