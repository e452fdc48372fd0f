// bfloat16 and float16 <-> float conversions in portable C++, bit-exact with torch (c10/util/BFloat16.h
// and c10/util/Half.h): round to nearest even, NaN stays NaN, float16 subnormals and overflow to
// infinity handled. Kernels with F16C use the hardware instructions instead; both give the same bits.
#pragma once

#include <cstdint>
#include <cstring>

namespace fastmask {

// 16-bit storage types, distinct so that templates can tell them apart.
struct BFloat16 {
  uint16_t bits;
};
struct Float16 {
  uint16_t bits;
};

inline float float_from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

inline uint32_t bits_from_float(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// bfloat16 is the high half of a float.
inline float bf16_to_float(uint16_t h) { return float_from_bits(static_cast<uint32_t>(h) << 16); }

// Round to nearest even; every NaN becomes the quiet NaN 0x7FC0, as torch does.
inline uint16_t float_to_bf16(float value) {
  const uint32_t bits = bits_from_float(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

// IEEE half to float, exact (the FP16 library's branch-free routine, as c10 uses).
inline float fp16_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const uint32_t exp_offset = 0xE0u << 23;
  const float exp_scale = 0x1.0p-112f;
  const float normalized = float_from_bits((two_w >> 4) + exp_offset) * exp_scale;
  const uint32_t magic_mask = 126u << 23;
  const float magic_bias = 0.5f;
  const float denormalized = float_from_bits((two_w >> 17) | magic_mask) - magic_bias;
  const uint32_t denormalized_cutoff = 1u << 27;
  return float_from_bits(sign | (two_w < denormalized_cutoff ? bits_from_float(denormalized) : bits_from_float(normalized)));
}

// Float to IEEE half, round to nearest even (overflow gives infinity, NaN gives 0x7E00 with the
// sign), the FP16 library's routine. It relies on float arithmetic rounding to nearest without
// flushing subnormals, the default floating-point environment.
inline uint16_t float_to_fp16(float value) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float magnitude = value < 0 ? -value : value;
  float base = (magnitude * scale_to_inf) * scale_to_zero;
  const uint32_t w = bits_from_float(value);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = float_from_bits((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = bits_from_float(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

// Loads and stores of one element in the accumulation type A (float or double).
template <typename A>
inline A load_as(const float* p) { return static_cast<A>(*p); }
template <typename A>
inline A load_as(const double* p) { return static_cast<A>(*p); }
template <typename A>
inline A load_as(const BFloat16* p) { return static_cast<A>(bf16_to_float(p->bits)); }
template <typename A>
inline A load_as(const Float16* p) { return static_cast<A>(fp16_to_float(p->bits)); }

template <typename A>
inline void store_from(float* p, A value) { *p = static_cast<float>(value); }
template <typename A>
inline void store_from(double* p, A value) { *p = static_cast<double>(value); }
template <typename A>
inline void store_from(BFloat16* p, A value) { p->bits = float_to_bf16(static_cast<float>(value)); }
template <typename A>
inline void store_from(Float16* p, A value) { p->bits = float_to_fp16(static_cast<float>(value)); }

}  // namespace fastmask
