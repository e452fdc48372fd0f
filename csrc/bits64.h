// 64-lane bit sets for the whole-word scan (whole_word.cpp): 64 consecutive tokens at a time, one
// bit each in a uint64_t, AVX2 where the CPU has it (each helper has a scalar twin or a caller that
// falls back). Internal to csrc/.
#pragma once

#include <cstdint>
#include <cstring>

#include "mlm_common.h"

#ifdef FASTMASK_MASKING_X86
#include "philox_avx2.h"
#endif

namespace fastmask::mlm {

constexpr int kScan = 64;  // tokens per scan step: one bit each in a uint64_t

inline uint64_t lane_mask64(int64_t lanes) {
  return lanes >= kScan ? ~uint64_t{0} : lanes <= 0 ? 0 : (uint64_t{1} << lanes) - 1;
}


// Bits (lane l: element l * stride) of "value != 0" for `lanes` elements of an integer tensor.
template <typename M>
inline uint64_t nonzero_bits_scalar(const M* p, int64_t stride, int64_t lanes) {
  uint64_t bits = 0;
  for (int64_t l = 0; l < lanes; ++l) bits |= static_cast<uint64_t>(p[l * stride] != 0) << l;
  return bits;
}

#ifdef FASTMASK_MASKING_X86
__attribute__((target("avx2"))) inline uint64_t equal_bytes64(const uint8_t* p, uint8_t value) {
  const __m256i v = _mm256_set1_epi8(static_cast<char>(value));
  const uint32_t lo = static_cast<uint32_t>(
      _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), v)));
  const uint32_t hi = static_cast<uint32_t>(
      _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)), v)));
  return lo | (static_cast<uint64_t>(hi) << 32);
}

// 64 contiguous uint8, int32 or int64 values: bits of value == 0.
__attribute__((target("avx2"))) inline uint64_t zero_bits64(const uint8_t* p) { return equal_bytes64(p, 0); }
__attribute__((target("avx2"))) inline uint64_t zero_bits64(const int64_t* p) {
  const __m256i zero = _mm256_setzero_si256();
  uint64_t bits = 0;
  for (int g = 0; g < kScan / 4; ++g)
    bits |= static_cast<uint64_t>(mask4(_mm256_cmpeq_epi64(load4(p + 4 * g), zero))) << (4 * g);
  return bits;
}
__attribute__((target("avx2"))) inline uint64_t zero_bits64(const int32_t* p) {
  const __m256i zero = _mm256_setzero_si256();
  uint64_t bits = 0;
  for (int g = 0; g < kScan / 8; ++g) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 8 * g));
    bits |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, zero)))))
            << (8 * g);
  }
  return bits;
}

// Ids (64 int64): bits of id outside [0, vocab) (unsigned compare) and of the special ids. Only the
// groups of four ids with one in the specials' range [lo, lo + span] (few: the specials are a few
// small ids) are compared with each special id; with more than kMaxVectorSpecials special ids,
// `special` holds the in-range bits instead, to be tested exactly by the caller.
__attribute__((target("avx2"))) inline void id_bits64(const int64_t* v, int64_t vocab, int64_t lo, uint64_t span,
                                                      const int64_t* specials, int64_t num_special, uint64_t& outside,
                                                      uint64_t& special) {
  const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
  const __m256i vocab_s = _mm256_set1_epi64x(vocab ^ INT64_MIN);
  const __m256i lo_v = _mm256_set1_epi64x(lo);
  const __m256i span_s = _mm256_set1_epi64x(static_cast<int64_t>(span ^ (uint64_t{1} << 63)));
  uint64_t inside = 0, near = 0;
  for (int g = 0; g < kScan / 4; ++g) {
    const __m256i id = load4(v + 4 * g);
    inside |= static_cast<uint64_t>(mask4(_mm256_cmpgt_epi64(vocab_s, _mm256_xor_si256(id, sign)))) << (4 * g);
    const __m256i offset = _mm256_xor_si256(_mm256_sub_epi64(id, lo_v), sign);
    near |= static_cast<uint64_t>(~mask4(_mm256_cmpgt_epi64(offset, span_s)) & 15u) << (4 * g);
  }
  uint64_t hits = near;
  if (num_special <= kMaxVectorSpecials && near != 0) {  // the groups with an id in range, compared exactly
    hits = 0;
    for (uint64_t groups = near; groups != 0;) {
      const int g = __builtin_ctzll(groups) >> 2;
      groups &= ~(uint64_t{15} << (4 * g));
      const __m256i id = load4(v + 4 * g);
      __m256i any = _mm256_setzero_si256();
      for (int64_t k = 0; k < num_special; ++k) any = _mm256_or_si256(any, _mm256_cmpeq_epi64(id, _mm256_set1_epi64x(specials[k])));
      hits |= static_cast<uint64_t>(mask4(any)) << (4 * g);
    }
  }
  outside = ~inside;
  special = hits;
}

// The positions of a 64-bit set's bits, appended to `out` (base + bit index), eight bits at a time
// through a table of each byte's bit indices: no branch per bit. Writes up to 8 entries past the end.
struct ByteBits {
  uint8_t index[256][8];
  uint8_t count[256];
  ByteBits() {
    for (int b = 0; b < 256; ++b) {
      int n = 0;
      for (int i = 0; i < 8; ++i)
        if (b >> i & 1) index[b][n++] = static_cast<uint8_t>(i);
      for (int i = n; i < 8; ++i) index[b][i] = 0;
      count[b] = static_cast<uint8_t>(n);
    }
  }
};
const ByteBits kByteBits;

__attribute__((target("avx2"))) inline int64_t append_bits64(uint64_t bits, uint32_t base, uint32_t* out) {
  int64_t n = 0;
  for (int byte = 0; byte < 8 && bits != 0; ++byte, bits >>= 8) {
    const unsigned b = static_cast<unsigned>(bits & 255);
    int64_t lanes;
    std::memcpy(&lanes, kByteBits.index[b], sizeof(lanes));
    const __m256i index = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(lanes));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + n),
                        _mm256_add_epi32(index, _mm256_set1_epi32(static_cast<int>(base + 8 * byte))));
    n += kByteBits.count[b];
  }
  return n;
}

// Word ids (64 contiguous int64 or int32 at p, the row's element `first_in_row` says whether p[-1]
// exists): bits of id != previous id, and of id < 0.
template <typename W>
__attribute__((target("avx2"))) inline void word_id_bits64(const W* p, bool first_in_row, uint64_t& changed,
                                                           uint64_t& negative) {
  const __m256i zero = _mm256_setzero_si256();
  uint64_t same = 0, neg = 0;
  for (int g = 0; g < kScan / 4; ++g) {
    const __m256i cur = load4(p + 4 * g);
    // Position 0 of a row has no previous token (and always starts a word): compare it with itself.
    const __m256i prev = (g == 0 && first_in_row) ? _mm256_permute4x64_epi64(cur, 0x90) : load4(p + 4 * g - 1);
    same |= static_cast<uint64_t>(mask4(_mm256_cmpeq_epi64(cur, prev))) << (4 * g);
    neg |= static_cast<uint64_t>(mask4(_mm256_cmpgt_epi64(zero, cur))) << (4 * g);
  }
  changed = ~same;
  negative = neg;
}

// Offsets (64 tokens of contiguous int64 [L, 2] pairs at p): bits of start != the previous token's end.
__attribute__((target("avx2"))) inline uint64_t offset_bits64(const int64_t* p, bool first_in_row) {
  uint64_t same = 0;
  for (int g = 0; g < kScan / 4; ++g) {
    const int64_t* q = p + 8 * g;
    const __m256i a = load4(q), a2 = load4(q + 4);  // (s0 e0 s1 e1), (s2 e2 s3 e3)
    const __m256i b = (g == 0 && first_in_row) ? _mm256_permute4x64_epi64(a, 0x90) : load4(q - 1);  // (e-1 s0 e0 s1)
    const __m256i b2 = load4(q + 3);                                                                 // (e1 s2 e2 s3)
    const __m256i eq = _mm256_unpacklo_epi64(_mm256_cmpeq_epi64(a, b), _mm256_cmpeq_epi64(a2, b2));  // tokens 0 2 1 3
    same |= static_cast<uint64_t>(mask4(_mm256_permute4x64_epi64(eq, 0xD8))) << (4 * g);
  }
  return ~same;
}

// A contiguous byte table (size >= 4) at 64 ids (in [0, size), checked): bits of table[id] != 0. Eight
// ids at a time gather the four bytes at min(id, size - 4) (never past the table) and shift theirs down.
__attribute__((target("avx2"))) inline uint64_t byte_table_bits64(const uint8_t* table, int64_t size, const int64_t* ids) {
  const __m256i last = _mm256_set1_epi32(static_cast<int>(size - 4));
  const __m256i zero = _mm256_setzero_si256();
  const __m256i byte = _mm256_set1_epi32(255);
  const __m256i pack = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  uint64_t bits = 0;
  for (int g = 0; g < kScan / 8; ++g) {
    // Eight int64 ids (all in [0, size) < 2^31) as int32: the low halves of two vectors of four.
    const __m256i lo4 = _mm256_permutevar8x32_epi32(load4(ids + 8 * g), pack);
    const __m256i hi4 = _mm256_permutevar8x32_epi32(load4(ids + 8 * g + 4), pack);
    const __m256i id = _mm256_permute2x128_si256(lo4, hi4, 0x20);
    const __m256i at = _mm256_min_epi32(id, last);
    const __m256i four = _mm256_i32gather_epi32(reinterpret_cast<const int*>(table), at, 1);
    const __m256i value = _mm256_and_si256(_mm256_srlv_epi32(four, _mm256_slli_epi32(_mm256_sub_epi32(id, at), 3)), byte);
    const uint32_t none = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(value, zero))));
    bits |= static_cast<uint64_t>(~none & 255u) << (8 * g);
  }
  return bits;
}

// Philox words at 8 * kVectors arbitrary positions (philox_avx2.h), word j of position k to
// out[j * stride + k]. Four vectors in flight for whole batches; a
// row's last words take only the vectors they need (a 128-token row has some 70 words).
template <int kVectors>
__attribute__((target("avx2"))) void philox_at_avx2(uint64_t seed, uint64_t key, uint32_t purpose,
                                                    const uint32_t* positions, uint32_t* out, int64_t stride) {
  constexpr int kLanes = 8;
  __m256i c0[kVectors], c1[kVectors], c2[kVectors], c3[kVectors];
  for (int n = 0; n < kVectors; ++n) {
    c0[n] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(positions + n * kLanes));
  }
  philox_avx2(seed, key, purpose, c0, c1, c2, c3);
  for (int n = 0; n < kVectors; ++n) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 0 * stride + n * kLanes), c0[n]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 1 * stride + n * kLanes), c1[n]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * stride + n * kLanes), c2[n]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 3 * stride + n * kLanes), c3[n]);
  }
}

// Bit set over 64 words (positions p, words w0): packed key below either bound.
__attribute__((target("avx2"))) inline uint64_t chosen_bits64(const uint32_t* w0, const uint32_t* p, uint64_t bound_a,
                                                              uint64_t bound_b) {
  const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
  const __m256i a = _mm256_set1_epi64x(static_cast<int64_t>(bound_a ^ (uint64_t{1} << 63)));
  const __m256i b = _mm256_set1_epi64x(static_cast<int64_t>(bound_b ^ (uint64_t{1} << 63)));
  uint64_t bits = 0;
  for (int g = 0; g < kScan / 4; ++g) {
    const __m256i word = _mm256_cvtepu32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + 4 * g)));
    const __m256i pos = _mm256_cvtepu32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4 * g)));
    const __m256i packed = _mm256_xor_si256(_mm256_or_si256(_mm256_slli_epi64(word, kPackShift), pos), sign);
    const __m256i below = _mm256_or_si256(_mm256_cmpgt_epi64(a, packed), _mm256_cmpgt_epi64(b, packed));
    bits |= static_cast<uint64_t>(mask4(below)) << (4 * g);
  }
  return bits;
}
#endif

// "value != 0" bits of `lanes` elements from p (stride in elements): 64 contiguous ones vectorized.
template <bool kVector, typename M>
__attribute__((always_inline)) inline uint64_t nonzero_bits(const M* p, int64_t stride, int64_t lanes) {
#ifdef FASTMASK_MASKING_X86
  if constexpr (kVector)
    if (lanes == kScan && stride == 1) return ~zero_bits64(p);
#endif
  return nonzero_bits_scalar(p, stride, lanes);
}

// "value != 0" bits of 64 (or `lanes`) elements of row `row` of a [batch, length] mask from `start`.
template <bool kVector>
__attribute__((always_inline)) inline uint64_t mask_nonzero_bits(const TensorView& m, int64_t row, int64_t start, int64_t lanes) {
  const int64_t offset = row * m.stride[0] + start * m.stride[1];
  switch (m.dtype) {
    case kBool:
    case kUInt8: return nonzero_bits<kVector>(static_cast<const uint8_t*>(m.data) + offset, m.stride[1], lanes);
    case kInt32: return nonzero_bits<kVector>(static_cast<const int32_t*>(m.data) + offset, m.stride[1], lanes);
    case kInt64: return nonzero_bits<kVector>(static_cast<const int64_t*>(m.data) + offset, m.stride[1], lanes);
    default:
      fail("fastmask: unsupported mask dtype code ", m.dtype);
  }
}

// Bits of "starts a word" and of "in no word" for 64 (or `lanes`) tokens from `start`, from the

}  // namespace fastmask::mlm
