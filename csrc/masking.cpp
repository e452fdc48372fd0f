// mask_tokens: BERT-style token masking, bit-identical to fastmask/reference/masking.py (the
// specification; docs/rng.md for the stream). One task per input row; its words come 32 positions
// at a time (purpose MLM_TOKENS: w0 select/predict, w1 corruption kind, w2 random id, w3 view) and
// every decision is an integer compare.
//
// Selection in both modes is "packed key < bound" with packed = (w0 << 31) | position:
//   Bernoulli: bound = threshold << 31, so packed < bound  <=>  w0 < threshold (positions < 2^31);
//   exact:     bound = (the k-th smallest packed key among the row's eligible positions) + 1.
//
// Per block of 32 positions: one branch-free pass over the ids (AVX2, four int64 lanes at a time,
// where the CPU has it) builds the bit sets of selected and predicted positions, the ids are copied
// to every view's output row, and only the set bits (~15% of positions) are visited to corrupt ids
// and write labels.
#include "masking.h"

#include "binding.h"

#include <algorithm>
#include <tuple>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common.h"
#include "philox.h"
#include "philox_block.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FASTMASK_MASKING_X86 1
#include "philox_avx2.h"
#endif

namespace fastmask {
namespace {

constexpr int kPackShift = 31;
constexpr int64_t kTwo32 = int64_t{1} << 32;

// --- words for 32 consecutive positions: philox_block ----------------------------------------

constexpr int kBlock = kPhiloxBlock;  // 32 positions: one bit each in a uint32_t
using BlockWords = PhiloxBlockWords;

inline void draw_block(uint64_t seed, uint64_t key, uint32_t first, BlockWords& words) {
  philox_block(seed, key, kPurposeMlmTokens, first, words);
}

// --- row-independent helpers ------------------------------------------------------------------

// A threshold outside [0, 2^32] decides like its clamped value (w0 is a uint32).
inline int64_t clamp_threshold(int64_t t) { return std::min(std::max(t, int64_t{0}), kTwo32); }

// fastmask._rng.count: round-half-up of n * threshold / 2^32 (n < 2^31, threshold in [0, 2^32]).
inline int64_t count(int64_t threshold, int64_t n) { return (n * threshold + (int64_t{1} << 31)) >> 32; }

// Membership in the sorted special ids. When they span fewer than kBitmapBits - 1 values (the usual
// case: a handful of small ids), a bitmap over [lo, lo + span + 1] with the last bit always zero
// answers without a branch; otherwise a range test and a binary search.
class Specials {
 public:
  static constexpr uint64_t kBitmapBits = 4096;

  Specials(const int64_t* ids, int64_t n) : ids_(ids), n_(n) {
    if (n_ > 0) {
      lo_ = ids_[0];
      span_ = static_cast<uint64_t>(ids_[n_ - 1]) - static_cast<uint64_t>(lo_);
    }
    bitmap_ = span_ < kBitmapBits - 1;
    if (bitmap_)
      for (int64_t k = 0; k < n_; ++k) {
        const uint64_t bit = static_cast<uint64_t>(ids_[k]) - static_cast<uint64_t>(lo_);
        bits_[bit >> 6] |= uint64_t{1} << (bit & 63);
      }
  }

  bool contains(int64_t id) const {
    const uint64_t offset = static_cast<uint64_t>(id) - static_cast<uint64_t>(lo_);  // huge when id < lo
    if (bitmap_) {
      const uint64_t bit = std::min(offset, span_ + 1);
      return (bits_[bit >> 6] >> (bit & 63)) & 1;
    }
    return offset <= span_ && std::binary_search(ids_, ids_ + n_, id);
  }

  int64_t size() const { return n_; }
  int64_t operator[](int64_t k) const { return ids_[k]; }

 private:
  const int64_t* ids_;
  int64_t n_;
  int64_t lo_ = 0;
  uint64_t span_ = 0;
  bool bitmap_ = true;
  uint64_t bits_[kBitmapBits / 64] = {};
};

// Per-thread buffers, grown once and reused by every row and call (no per-row allocation).
struct Scratch {
  std::vector<uint8_t> flags;      // the masks' verdict per position
  std::vector<uint32_t> words;     // exact mode: the row's words, [block][4][kBlock]
  std::vector<uint64_t> packed;    // exact mode: packed keys of the eligible positions
  std::vector<uint64_t> bucket;    // exact mode: the keys of one histogram bucket
  std::vector<int64_t> counts;     // labels kept so far, per view (capacity)
  std::vector<uint8_t> full;       // whole words: a word of this view did not fit in the capacity
};

template <typename M>
void and_mask(uint8_t* flags, const M* data, int64_t stride, int64_t length, bool want_zero) {
  if (want_zero) {
    for (int64_t i = 0; i < length; ++i) flags[i] &= static_cast<uint8_t>(data[i * stride] == 0);
  } else {
    for (int64_t i = 0; i < length; ++i) flags[i] &= static_cast<uint8_t>(data[i * stride] != 0);
  }
}

// flags[i] &= (mask[row, i] == 0) if want_zero else (mask[row, i] != 0).
void and_mask_row(uint8_t* flags, const TensorView& mask, int64_t row, int64_t length, bool want_zero) {
  const int64_t offset = row * mask.stride[0];
  switch (mask.dtype) {
    case kBool:
    case kUInt8:
      return and_mask(flags, static_cast<const uint8_t*>(mask.data) + offset, mask.stride[1], length, want_zero);
    case kInt32:
      return and_mask(flags, static_cast<const int32_t*>(mask.data) + offset, mask.stride[1], length, want_zero);
    case kInt64:
      return and_mask(flags, static_cast<const int64_t*>(mask.data) + offset, mask.stride[1], length, want_zero);
    default:
      fail("fastmask: unsupported mask dtype code ", mask.dtype);
  }
}

// What stays the same for every row of one call.
struct Consts {
  uint64_t seed;
  Specials specials;
  int64_t mask_t, random_end;  // corruption: w1 < mask_t -> mask token; mask_t <= w1 < random_end -> random id
  bool check_vocab;
  bool vector;  // Avx2Decider applies: AVX2 and at most kMaxVectorSpecials special ids
};

template <typename T>
[[noreturn]] void fail_id(T value, int64_t b, int64_t i, int64_t vocab_size) {
  fail("input_ids: id ", static_cast<int64_t>(value), " at position (", b, ", ", i,
       ") is outside the vocabulary [0, ", vocab_size, ")");
}

// The replacement id chosen by word 2: Lemire's index into the table, or into [0, vocab) with the
// sorted special ids skipped. The product wraps like torch's int64 arithmetic would.
inline int64_t random_id(const MaskTokensArgs& a, const Specials& specials, uint32_t word) {
  int64_t index = static_cast<int64_t>(static_cast<uint64_t>(word) * static_cast<uint64_t>(a.replace_count)) >> 32;
  if (a.replace_table.data != nullptr)
    return load_int(a.replace_table.data, a.replace_table.dtype, index, a.replace_table.stride[0]);
  for (int64_t k = 0; k < specials.size(); ++k) index += index >= specials[k];
  return index;
}

// Exact mode: the bound of the k smallest of the n packed keys (k <= n), i.e. the k-th smallest + 1,
// or 0 for k = 0. A histogram of the top 8 bits of w0 finds the bucket holding the k-th key; only
// that bucket (about n / 256 keys) is partially sorted.
uint64_t exact_bound(const uint64_t* keys, int64_t n, int64_t k, const int64_t* histogram, Scratch& scratch) {
  if (k <= 0) return 0;
  constexpr int kShift = kPackShift + 24;  // packed >> 55 = w0 >> 24
  int64_t below = 0;
  int bucket = 0;
  while (below + histogram[bucket] < k) below += histogram[bucket++];
  scratch.bucket.clear();
  for (int64_t m = 0; m < n; ++m)
    if (static_cast<int>(keys[m] >> kShift) == bucket) scratch.bucket.push_back(keys[m]);
  const int64_t rank = k - below - 1;
  std::nth_element(scratch.bucket.begin(), scratch.bucket.begin() + rank, scratch.bucket.end());
  return scratch.bucket[static_cast<size_t>(rank)] + 1;
}

// --- the decisions of one block, as bit sets over its lanes -------------------------------------
// A decider draws a block's words and turns a block of ids into bit sets (bit l: position
// start + l). write_row_body is written once and instantiated for the scalar decider (any CPU) and
// for the AVX2 one, inside a function compiled for AVX2 so that everything inlines.

struct BlockBits {
  uint32_t selected, predicted, outside;  // outside: id not in [0, vocab) (all set when vocab is 0)
};

inline uint32_t lane_mask(int lanes) { return lanes >= kBlock ? ~uint32_t{0} : (uint32_t{1} << lanes) - 1; }

// What a decider needs of the row: selected = eligible and packed < bound_select, likewise predicted.
struct RowQuery {
  int64_t n_valid;
  int64_t vocab;
  uint64_t bound_select, bound_predict;
  const uint8_t* flags;  // nullptr, or the masks' verdict, padded with zeros to whole blocks
};

struct ScalarDecider {
  const Specials& specials;
  RowQuery q;

  void draw(uint64_t seed, uint64_t key, uint32_t first, BlockWords& words) const { draw_block(seed, key, first, words); }

  template <typename T>
  BlockBits decide(const T* values, const uint32_t* w0, int lanes, int64_t start) const {
    BlockBits bits{0, 0, 0};
    for (int l = 0; l < lanes; ++l) {
      const int64_t i = start + l;
      const int64_t id = static_cast<int64_t>(values[l]);
      bits.outside |= static_cast<uint32_t>(static_cast<uint64_t>(id) >= static_cast<uint64_t>(q.vocab)) << l;
      const bool eligible = i < q.n_valid && !specials.contains(id) && (q.flags == nullptr || q.flags[i] != 0);
      const uint64_t packed = (static_cast<uint64_t>(w0[l]) << kPackShift) | static_cast<uint64_t>(i);
      bits.selected |= static_cast<uint32_t>(eligible && packed < q.bound_select) << l;
      bits.predicted |= static_cast<uint32_t>(eligible && packed < q.bound_predict) << l;
    }
    return bits;
  }
};

#ifdef FASTMASK_MASKING_X86
constexpr int64_t kMaxVectorSpecials = 16;  // more special ids: the scalar decider (bitmap / binary search)

__attribute__((target("avx2"))) inline __m256i load4(const int64_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
__attribute__((target("avx2"))) inline __m256i load4(const int32_t* p) {
  return _mm256_cvtepi32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
__attribute__((target("avx2"))) inline uint32_t mask4(__m256i m) {
  return static_cast<uint32_t>(_mm256_movemask_pd(_mm256_castsi256_pd(m)));
}

// The scalar decider's bits, four int64 lanes at a time. `values` holds kBlock readable ids (lanes
// past `lanes` are ignored). Unsigned 64-bit compares flip the sign bit and compare signed.
struct Avx2Decider {
  __m256i vocab, n_valid, bound_select, bound_predict;
  __m256i specials[kMaxVectorSpecials];
  int64_t num_special;
  const uint8_t* flags;

  __attribute__((target("avx2"))) Avx2Decider(const RowQuery& q, const int64_t* special_ids, int64_t count)
      : num_special(count), flags(q.flags) {
    vocab = _mm256_set1_epi64x(q.vocab);
    n_valid = _mm256_set1_epi64x(q.n_valid);
    bound_select = _mm256_set1_epi64x(static_cast<int64_t>(q.bound_select ^ (uint64_t{1} << 63)));
    bound_predict = _mm256_set1_epi64x(static_cast<int64_t>(q.bound_predict ^ (uint64_t{1} << 63)));
    for (int64_t k = 0; k < count; ++k) specials[k] = _mm256_set1_epi64x(special_ids[k]);
  }

  void draw(uint64_t seed, uint64_t key, uint32_t first, BlockWords& words) const { draw_block(seed, key, first, words); }

  template <typename T>
  __attribute__((target("avx2"))) BlockBits decide(const T* values, const uint32_t* w0, int lanes, int64_t start) const {
    const __m256i zero = _mm256_setzero_si256();
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
    __m256i position = _mm256_add_epi64(_mm256_set1_epi64x(start), _mm256_setr_epi64x(0, 1, 2, 3));
    uint32_t inside = 0, eligible = 0, below_select = 0, below_predict = 0;
    for (int g = 0; g < kBlock / 4; ++g) {
      const __m256i id = load4(values + 4 * g);
      const int shift = 4 * g;
      inside |= mask4(_mm256_andnot_si256(_mm256_cmpgt_epi64(zero, id), _mm256_cmpgt_epi64(vocab, id))) << shift;
      __m256i special = zero;
      for (int64_t k = 0; k < num_special; ++k) special = _mm256_or_si256(special, _mm256_cmpeq_epi64(id, specials[k]));
      __m256i ok = _mm256_andnot_si256(special, _mm256_cmpgt_epi64(n_valid, position));
      if (flags != nullptr) {
        int32_t four;
        std::memcpy(&four, flags + start + 4 * g, sizeof(four));
        ok = _mm256_andnot_si256(_mm256_cmpeq_epi64(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128(four)), zero), ok);
      }
      eligible |= mask4(ok) << shift;
      const __m256i word = _mm256_cvtepu32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + 4 * g)));
      const __m256i packed = _mm256_xor_si256(_mm256_or_si256(_mm256_slli_epi64(word, kPackShift), position), sign);
      below_select |= mask4(_mm256_cmpgt_epi64(bound_select, packed)) << shift;
      below_predict |= mask4(_mm256_cmpgt_epi64(bound_predict, packed)) << shift;
      position = _mm256_add_epi64(position, _mm256_set1_epi64x(4));
    }
    const uint32_t valid = lane_mask(lanes);
    return {eligible & below_select & valid, eligible & below_predict & valid, ~inside & valid};
  }
};
#endif

// One input row -> its `views` output rows. `stored` (exact mode) holds the row's words; otherwise
// they are drawn here, a block at a time.
template <typename T, typename Decider>
__attribute__((always_inline)) inline void write_row_body(const MaskTokensArgs& a, const Consts& c, int64_t b,
                                                          uint64_t key, const T* row, const uint32_t* stored,
                                                          const Decider& decider, Scratch& scratch) {
  const int64_t length = a.length, views = a.views, capacity = a.max_predictions;
  const int64_t stride = a.ids.stride[1];
  T* out = static_cast<T*>(a.out_ids) + b * views * length;
  T* labels = static_cast<T*>(a.labels) + b * views * length;
  int64_t* positions = a.positions + b * views * capacity;
  const T ignore = static_cast<T>(a.ignore_index);
  const T mask_token = static_cast<T>(a.mask_token_id);
  const bool can_replace = a.replace_count > 0;

  int64_t single_count = 0;
  int64_t* counts = &single_count;
  if (capacity > 0) {
    std::fill(positions, positions + views * capacity, int64_t{-1});
    if (views > 1) {
      scratch.counts.assign(static_cast<size_t>(views), 0);
      counts = scratch.counts.data();
    }
  }

  BlockWords drawn;
  T gathered[kBlock] = {};
  for (int64_t start = 0; start < length; start += kBlock) {
    const uint32_t(*w)[kBlock];
    if (stored != nullptr) {
      w = reinterpret_cast<const uint32_t(*)[kBlock]>(stored + 4 * start);
    } else {
      decider.draw(c.seed, key, static_cast<uint32_t>(start), drawn);
      w = drawn;
    }
    const int lanes = static_cast<int>(std::min<int64_t>(kBlock, length - start));
    const T* values = row + start;  // kBlock readable ids: in place when contiguous, else gathered
    if (stride != 1 || lanes < kBlock) {
      for (int l = 0; l < lanes; ++l) gathered[l] = row[(start + l) * stride];
      values = gathered;
    }

    const BlockBits bits = decider.decide(values, w[0], lanes, start);
    if (c.check_vocab && bits.outside != 0) {
      const int l = __builtin_ctz(bits.outside);  // the first bad id of the row: blocks go in order
      fail_id(values[l], b, start + l, a.vocab_size);
    }

    for (int64_t j = 0; j < views; ++j) {
      std::copy(values, values + lanes, out + j * length + start);
      std::fill(labels + j * length + start, labels + j * length + start + lanes, ignore);
    }

    // Corruption of the selected positions, each in its view's row.
    for (uint32_t set = bits.selected; set != 0; set &= set - 1) {
      const int l = __builtin_ctz(set);
      const int64_t w1 = w[1][l];
      T corrupted = values[l];
      if (w1 < c.mask_t)
        corrupted = mask_token;
      else if (can_replace && w1 < c.random_end)
        corrupted = static_cast<T>(random_id(a, c.specials, w[2][l]));
      const int64_t view = (static_cast<int64_t>(w[3][l]) * views) >> 32;
      out[view * length + start + l] = corrupted;
    }

    // Labels of the predicted positions, in position order (the capacity keeps the first ones).
    for (uint32_t set = bits.predicted; set != 0; set &= set - 1) {
      const int l = __builtin_ctz(set);
      const int64_t view = (static_cast<int64_t>(w[3][l]) * views) >> 32;
      if (capacity > 0) {
        int64_t& kept = counts[view];
        if (kept >= capacity) continue;
        positions[view * capacity + kept] = start + l;
        ++kept;
      }
      labels[view * length + start + l] = values[l];
    }
  }
}

template <typename T>
void write_row_portable(const MaskTokensArgs& a, const Consts& c, int64_t b, uint64_t key, const T* row,
                        const uint32_t* stored, const RowQuery& q, Scratch& scratch) {
  write_row_body(a, c, b, key, row, stored, ScalarDecider{c.specials, q}, scratch);
}

#ifdef FASTMASK_MASKING_X86
template <typename T>
__attribute__((target("avx2"))) void write_row_avx2(const MaskTokensArgs& a, const Consts& c, int64_t b, uint64_t key,
                                                    const T* row, const uint32_t* stored, const RowQuery& q,
                                                    Scratch& scratch) {
  write_row_body(a, c, b, key, row, stored, Avx2Decider(q, a.special_ids, a.num_special), scratch);
}
#endif

bool use_vector(int64_t num_special) {
#ifdef FASTMASK_MASKING_X86
  return philox_block_avx2() && num_special <= kMaxVectorSpecials;
#else
  (void)num_special;
  return false;
#endif
}

// The whole-word rows' AVX2 path also takes BMI1/2 (tzcnt): every AVX2 CPU but a few has them.
bool use_word_vector() {
#ifdef FASTMASK_MASKING_X86
  static const bool yes = philox_block_avx2() && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  return yes;
#else
  return false;
#endif
}

// --- whole-word masking -------------------------------------------------------------------------
// Eligibility as in token mode, and "in a word" (word_ids >= 0, code != kNoWord). An eligible token
// starts a word when its source says so or the token before it is not eligible; the word's decisions
// (select, predict, kind, view) come from the words of its first token (purpose WHOLE_WORD), the
// random id of each token from its own word 2. Per row, O(length):
//   scan:   64 tokens at a time (AVX2 where the CPU has it), the id check and two bit sets, the
//           eligible tokens and the words' first tokens, read straight from the word source
//           (codes, word ids, offsets or the table); the first tokens' positions are listed;
//   draw:   Philox at the listed positions only (one word, one draw; 8 lanes x 4 in flight);
//   decide: select / predict per word (Bernoulli, or exact's bound over the words' packed keys),
//           as a bit set over the words;
//   write:  the ids are copied to every view's row and the labels set to ignore_index; then only the
//           selected or predicted words are visited, each over [first token, next first token or
//           next ineligible token). A random word's later tokens draw their own word 2 (scalar).

constexpr int kScan = 64;  // tokens per scan step: one bit each in a uint64_t

inline uint64_t lane_mask64(int64_t lanes) {
  return lanes >= kScan ? ~uint64_t{0} : lanes <= 0 ? 0 : (uint64_t{1} << lanes) - 1;
}

// Per-thread buffers of the whole-word rows.
struct WordScratch {
  std::vector<uint64_t> eligible;  // bit set of the eligible tokens, two zero words past the end
  std::vector<uint32_t> first;     // positions of the words' first tokens, in order
  std::vector<uint32_t> draws;     // their Philox words: [4][capacity]
  std::vector<uint64_t> chosen;    // bit set over the words: selected or predicted
};

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
// word source; `ids` holds the tokens' ids (in range when a table is read).
template <bool kVector, typename W>
__attribute__((always_inline)) inline void word_id_source_bits(const W* p, int64_t stride, int64_t start, int64_t lanes, uint64_t& starts,
                                uint64_t& no_word) {
#ifdef FASTMASK_MASKING_X86
  if constexpr (kVector)
    if (lanes == kScan && stride == 1) return word_id_bits64(p + start, start == 0, starts, no_word);
#endif
  starts = 0;
  no_word = 0;
  int64_t prev = start > 0 ? static_cast<int64_t>(p[(start - 1) * stride]) : 0;
  for (int64_t l = 0; l < lanes; ++l) {
    const int64_t w = static_cast<int64_t>(p[(start + l) * stride]);
    starts |= static_cast<uint64_t>(w != prev) << l;
    no_word |= static_cast<uint64_t>(w < 0) << l;
    prev = w;
  }
}

template <bool kVector, typename W>
__attribute__((always_inline)) inline uint64_t offset_source_bits(const W* p, int64_t stride, int64_t pair_stride, int64_t start, int64_t lanes) {
#ifdef FASTMASK_MASKING_X86
  if constexpr (kVector && std::is_same_v<W, int64_t>)
    if (lanes == kScan && stride == 2 && pair_stride == 1) return offset_bits64(p + 2 * start, start == 0);
#endif
  uint64_t starts = 0;
  int64_t prev_end = start > 0 ? static_cast<int64_t>(p[(start - 1) * stride + pair_stride]) : 0;
  for (int64_t l = 0; l < lanes; ++l) {
    const W* q = p + (start + l) * stride;
    starts |= static_cast<uint64_t>(static_cast<int64_t>(q[0]) != prev_end) << l;
    prev_end = static_cast<int64_t>(q[pair_stride]);
  }
  return starts;
}

template <typename E>
__attribute__((always_inline)) inline uint64_t table_bits(const E* table, int64_t stride, int64_t size, const int64_t* ids, int64_t lanes) {
  uint64_t starts = 0;
  for (int64_t l = 0; l < lanes; ++l) {
    const int64_t id = std::min(std::max(ids[l], int64_t{0}), size - 1);  // checked against the vocabulary already
    starts |= static_cast<uint64_t>(table[id * stride] != 0) << l;
  }
  return starts;
}

template <bool kVector>
__attribute__((always_inline)) inline void source_bits(const MaskTokensArgs& a, int64_t b, int64_t start, int64_t lanes, const int64_t* ids,
                        uint64_t& starts, uint64_t& no_word) {
  const TensorView& s = a.words;
  starts = 0;
  no_word = 0;
  switch (a.word_source) {
    case kWordCodes: {
      const uint8_t* p = static_cast<const uint8_t*>(s.data) + b * s.stride[0];
#ifdef FASTMASK_MASKING_X86
      if constexpr (kVector)
        if (lanes == kScan && s.stride[1] == 1) {
          starts = equal_bytes64(p + start, kWordStarts);
          no_word = equal_bytes64(p + start, kNoWord);
          return;
        }
#endif
      for (int64_t l = 0; l < lanes; ++l) {
        const uint8_t code = p[(start + l) * s.stride[1]];
        starts |= static_cast<uint64_t>(code == kWordStarts) << l;
        no_word |= static_cast<uint64_t>(code == kNoWord) << l;
      }
      return;
    }
    case kWordIds:
      if (s.dtype == kInt64)
        return word_id_source_bits<kVector>(static_cast<const int64_t*>(s.data) + b * s.stride[0], s.stride[1], start, lanes,
                                            starts, no_word);
      return word_id_source_bits<kVector>(static_cast<const int32_t*>(s.data) + b * s.stride[0], s.stride[1], start, lanes,
                                          starts, no_word);
    case kWordOffsets:
      if (s.dtype == kInt64)
        starts = offset_source_bits<kVector>(static_cast<const int64_t*>(s.data) + b * s.stride[0], s.stride[1],
                                             a.words.stride[2], start, lanes);
      else
        starts = offset_source_bits<kVector>(static_cast<const int32_t*>(s.data) + b * s.stride[0], s.stride[1],
                                             a.words.stride[2], start, lanes);
      return;
    case kWordTable:
      switch (s.dtype) {
        case kBool:
        case kUInt8:
#ifdef FASTMASK_MASKING_X86
          if constexpr (kVector)
            if (lanes == kScan && s.stride[0] == 1 && a.vocab_size >= 4) {
              starts = byte_table_bits64(static_cast<const uint8_t*>(s.data), a.vocab_size, ids);
              return;
            }
#endif
          starts = table_bits(static_cast<const uint8_t*>(s.data), s.stride[0], a.vocab_size, ids, lanes);
          return;
        case kInt32: starts = table_bits(static_cast<const int32_t*>(s.data), s.stride[0], a.vocab_size, ids, lanes); return;
        case kInt64: starts = table_bits(static_cast<const int64_t*>(s.data), s.stride[0], a.vocab_size, ids, lanes); return;
        default: fail("word_table: unsupported dtype code ", s.dtype);
      }
    default:
      fail("fastmask: unknown word source ", a.word_source);
  }
}

// dst[p, end) = value where dst[end, p + 4) still holds `rest[end, p + 4)` (the write loop visits
// words in position order: the tokens after a word are untouched yet, original ids in an output row,
// ignore_index in a labels row). Words are short (1 to 3 tokens mostly), so the vector path writes
// four elements with one plain store, value then rest, instead of a loop whose trip count the branch
// predictor cannot guess (masked stores are slow on some CPUs). rest_value: rest is one value.
#ifdef FASTMASK_MASKING_X86
__attribute__((target("avx2"))) inline __m256i span_mask4(int64_t n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
__attribute__((target("avx2"))) inline void store4(int64_t* dst, int64_t n, __m256i head, __m256i tail) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_blendv_epi8(tail, head, span_mask4(n)));
}
__attribute__((target("avx2"))) inline void store4(int32_t* dst, int64_t n, __m128i head, __m128i tail) {
  const __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(n)), _mm_setr_epi32(0, 1, 2, 3));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_blendv_epi8(tail, head, m));
}
__attribute__((target("avx2"))) inline void fill4(int64_t* dst, int64_t n, int64_t value, const int64_t* rest) {
  store4(dst, n, _mm256_set1_epi64x(value), load4(rest));
}
__attribute__((target("avx2"))) inline void fill4(int32_t* dst, int64_t n, int32_t value, const int32_t* rest) {
  store4(dst, n, _mm_set1_epi32(value), _mm_loadu_si128(reinterpret_cast<const __m128i*>(rest)));
}
__attribute__((target("avx2"))) inline void copy4(int64_t* dst, int64_t n, const int64_t* src, int64_t rest) {
  store4(dst, n, load4(src), _mm256_set1_epi64x(rest));
}
__attribute__((target("avx2"))) inline void copy4(int32_t* dst, int64_t n, const int32_t* src, int32_t rest) {
  store4(dst, n, _mm_loadu_si128(reinterpret_cast<const __m128i*>(src)), _mm_set1_epi32(rest));
}
#endif

// dst[p, end) = value; dst[end, p + 4) holds src[end, p + 4) (contiguous src, the row of ids).
template <bool kVector, typename T>
__attribute__((always_inline)) inline void fill_span(T* dst, const T* src, int64_t p, int64_t end, int64_t length, T value) {
#ifdef FASTMASK_MASKING_X86
  if constexpr (kVector)
    if (end - p <= 4 && p + 4 <= length) return fill4(dst + p, end - p, value, src + p);
#endif
  for (int64_t i = p; i < end; ++i) dst[i] = value;
}

// dst[p, end) = src[p, end); dst[end, p + 4) holds `rest`.
template <bool kVector, typename T>
__attribute__((always_inline)) inline void copy_span(T* dst, const T* src, int64_t p, int64_t end, int64_t length, T rest) {
#ifdef FASTMASK_MASKING_X86
  if constexpr (kVector)
    if (end - p <= 4 && p + 4 <= length) return copy4(dst + p, end - p, src + p, rest);
#endif
  for (int64_t i = p; i < end; ++i) dst[i] = src[i];
}

template <typename T, bool kVector>
__attribute__((always_inline)) inline void words_row_body(const MaskTokensArgs& a, const Consts& c, int64_t b, uint64_t key,
                                                          const T* row, int64_t n_valid, int64_t select_t,
                                                          int64_t predict_t, Scratch& scratch, WordScratch& ws) {
  const int64_t length = a.length, views = a.views, capacity = a.max_predictions;
  const int64_t stride = a.ids.stride[1];
  const int64_t steps = (length + kScan - 1) / kScan;
  T* out = static_cast<T*>(a.out_ids) + b * views * length;
  T* labels = static_cast<T*>(a.labels) + b * views * length;
  int64_t* positions = a.positions + b * views * capacity;
  const T ignore = static_cast<T>(a.ignore_index);
  const T mask_token = static_cast<T>(a.mask_token_id);
  const bool can_replace = a.replace_count > 0;
  const int64_t special_lo = c.specials.size() > 0 ? c.specials[0] : 0;
  const uint64_t special_span =
      c.specials.size() > 0 ? static_cast<uint64_t>(c.specials[c.specials.size() - 1]) - static_cast<uint64_t>(special_lo) : 0;
  const bool any_special = c.specials.size() > 0;

  // Scan: eligible tokens, words' first tokens; the ids are copied to every view's row.
  ws.eligible.resize(static_cast<size_t>(steps + 2));
  ws.first.resize(static_cast<size_t>(length + 2 * kScan));
  uint64_t* eligible_bits = ws.eligible.data();
  uint32_t* first = ws.first.data();
  int64_t n = 0;
  uint64_t carry = 0;  // whether the token before the step is eligible
  int64_t buffer[kScan];
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t start = step * kScan;
    const int64_t lanes = std::min<int64_t>(kScan, length - start);
    const int64_t* ids;
    if (std::is_same_v<T, int64_t> && stride == 1 && lanes == kScan) {
      ids = reinterpret_cast<const int64_t*>(row + start);
    } else {
      for (int64_t l = 0; l < lanes; ++l) buffer[l] = static_cast<int64_t>(row[(start + l) * stride]);
      for (int64_t l = lanes; l < kScan; ++l) buffer[l] = 0;
      ids = buffer;
    }
    const uint64_t valid = lane_mask64(lanes);
    uint64_t outside = 0, candidate = 0;
    bool exact_specials = false;  // candidate holds the special ids themselves
#ifdef FASTMASK_MASKING_X86
    if constexpr (kVector) {
      id_bits64(ids, a.vocab_size, special_lo, special_span, a.special_ids, a.num_special, outside, candidate);
      exact_specials = a.num_special <= kMaxVectorSpecials;
    } else
#endif
    {
      for (int64_t l = 0; l < lanes; ++l) {
        outside |= static_cast<uint64_t>(static_cast<uint64_t>(ids[l]) >= static_cast<uint64_t>(a.vocab_size)) << l;
        candidate |= static_cast<uint64_t>(static_cast<uint64_t>(ids[l]) - static_cast<uint64_t>(special_lo) <= special_span) << l;
      }
    }
    outside &= valid;
    if (c.check_vocab && outside != 0) {
      const int l = __builtin_ctzll(outside);  // the first bad id of the row: steps go in order
      fail_id(ids[l], b, start + l, a.vocab_size);
    }
    uint64_t eligible = lane_mask64(std::min<int64_t>(lanes, n_valid - start));
    if (exact_specials)
      eligible &= ~candidate;
    else if (any_special)
      for (uint64_t set = candidate & eligible; set != 0; set &= set - 1) {
        const int l = __builtin_ctzll(set);
        if (c.specials.contains(ids[l])) eligible &= ~(uint64_t{1} << l);
      }
    if (a.special_mask.data != nullptr) eligible &= ~mask_nonzero_bits<kVector>(a.special_mask, b, start, lanes);
    if (a.attention_mask.data != nullptr) eligible &= mask_nonzero_bits<kVector>(a.attention_mask, b, start, lanes);
    uint64_t starts, no_word;
    source_bits<kVector>(a, b, start, lanes, ids, starts, no_word);
    eligible &= ~no_word;
    uint64_t firsts = eligible & (starts | ~((eligible << 1) | carry));
    carry = eligible >> 63;
    eligible_bits[step] = eligible;
#ifdef FASTMASK_MASKING_X86
    if constexpr (kVector) {
      n += append_bits64(firsts, static_cast<uint32_t>(start), first + n);
    } else
#endif
    {
      for (; firsts != 0; firsts &= firsts - 1) first[n++] = static_cast<uint32_t>(start + __builtin_ctzll(firsts));
    }

    if (stride != 1)  // contiguous rows are copied whole below
      for (int64_t j = 0; j < views; ++j)
        for (int64_t l = 0; l < lanes; ++l) out[j * length + start + l] = static_cast<T>(ids[l]);
  }
  if (stride == 1)
    for (int64_t j = 0; j < views; ++j) std::memcpy(out + j * length, row, static_cast<size_t>(length) * sizeof(T));
  eligible_bits[steps] = eligible_bits[steps + 1] = 0;
  for (int64_t j = 0; j < views; ++j) std::fill(labels + j * length, labels + (j + 1) * length, ignore);
  if (capacity > 0) std::fill(positions, positions + views * capacity, int64_t{-1});
  if (n == 0) return;

  // Draw: the words of each word's first token.
  const int64_t padded = (n + kScan - 1) / kScan * kScan;
  std::fill_n(first + n, kScan, first[n - 1]);  // a whole step, whatever n: no trip count to mispredict
  ws.draws.resize(static_cast<size_t>(4 * padded));
  uint32_t* w0 = ws.draws.data();
  uint32_t* w1 = w0 + padded;
  uint32_t* w2 = w1 + padded;
  uint32_t* w3 = w2 + padded;
#ifdef FASTMASK_MASKING_X86
  if constexpr (kVector) {
    int64_t k = 0;
    for (; k + kBlock <= n; k += kBlock) philox_at_avx2<4>(c.seed, key, kPurposeWholeWord, first + k, w0 + k, padded);
    switch ((n - k + 7) / 8) {
      case 1: philox_at_avx2<1>(c.seed, key, kPurposeWholeWord, first + k, w0 + k, padded); break;
      case 2: philox_at_avx2<2>(c.seed, key, kPurposeWholeWord, first + k, w0 + k, padded); break;
      case 3: philox_at_avx2<3>(c.seed, key, kPurposeWholeWord, first + k, w0 + k, padded); break;
      case 4: philox_at_avx2<4>(c.seed, key, kPurposeWholeWord, first + k, w0 + k, padded); break;
      default: break;
    }
  } else
#endif
  {
    for (int64_t k = 0; k < padded; ++k) {
      const Words4 w = stream_words(c.seed, key, first[k], kPurposeWholeWord);
      w0[k] = w.w[0];
      w1[k] = w.w[1];
      w2[k] = w.w[2];
      w3[k] = w.w[3];
    }
  }

  // Decide: packed = (w0 << 31) | first position, below the bound.
  uint64_t bound_select = static_cast<uint64_t>(select_t) << kPackShift;
  uint64_t bound_predict = static_cast<uint64_t>(predict_t) << kPackShift;
  if (a.exact) {
    scratch.packed.resize(static_cast<size_t>(n));
    uint64_t* keys = scratch.packed.data();
    int64_t histogram[256] = {};
    for (int64_t k = 0; k < n; ++k) {
      keys[k] = (static_cast<uint64_t>(w0[k]) << kPackShift) | first[k];
      ++histogram[w0[k] >> 24];
    }
    bound_select = exact_bound(keys, n, count(select_t, n), histogram, scratch);
    bound_predict = exact_bound(keys, n, count(predict_t, n), histogram, scratch);
  }
  const int64_t chunks = padded / kScan;
  ws.chosen.resize(static_cast<size_t>(chunks));
  uint64_t* chosen = ws.chosen.data();
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t base = chunk * kScan;
    uint64_t bits = 0;
#ifdef FASTMASK_MASKING_X86
    if constexpr (kVector) {
      bits = chosen_bits64(w0 + base, first + base, bound_select, bound_predict);
    } else
#endif
    {
      for (int l = 0; l < kScan; ++l) {
        const uint64_t packed = (static_cast<uint64_t>(w0[base + l]) << kPackShift) | first[base + l];
        bits |= static_cast<uint64_t>(packed < bound_select || packed < bound_predict) << l;
      }
    }
    chosen[chunk] = bits & lane_mask64(n - base);
  }

  // Write: the chosen words only.
  int64_t single[2] = {0, 0};
  int64_t* counts = single;  // labels kept so far, per view
  uint8_t* full = nullptr;   // a word of this view did not fit: it and every later word lose their labels
  uint8_t single_full = 0;
  if (capacity > 0) {
    if (views > 1) {
      scratch.counts.assign(static_cast<size_t>(views), 0);
      scratch.full.assign(static_cast<size_t>(views), 0);
      counts = scratch.counts.data();
      full = scratch.full.data();
    } else {
      full = &single_full;
    }
  }
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    for (uint64_t set = chosen[chunk]; set != 0; set &= set - 1) {
      const int64_t k = chunk * kScan + __builtin_ctzll(set);
      const int64_t p = first[k];
      // The word's end: the next first token, or the next ineligible token.
      const int64_t next = k + 1 < n ? static_cast<int64_t>(first[k + 1]) : length;
      // The 64 eligibility bits from p + 1 on (two sentinel words past the end are 0: gaps there).
      const int64_t q = p + 1;
      const int shift = static_cast<int>(q & 63);
      const uint64_t* word = eligible_bits + (q >> 6);
      const uint64_t window = shift == 0 ? word[0] : (word[0] >> shift) | (word[1] << (64 - shift));
      int64_t end = next;
      if (~window != 0) {
        end = std::min<int64_t>(next, q + __builtin_ctzll(~window));
      } else {  // 64 eligible tokens in a row after p: a very long word, or one that runs to `next`
        for (int64_t i = q + 64; i < next; ++i)
          if (!(eligible_bits[i >> 6] >> (i & 63) & 1)) {
            end = i;
            break;
          }
      }

      const uint64_t packed = (static_cast<uint64_t>(w0[k]) << kPackShift) | static_cast<uint64_t>(p);
      const int64_t view = (static_cast<int64_t>(w3[k]) * views) >> 32;
      T* view_out = out + view * length;
      if (packed < bound_select) {
        const int64_t w = w1[k];
        if (w < c.mask_t) {
          if (stride == 1)
            fill_span<kVector>(view_out, row, p, end, length, mask_token);
          else
            for (int64_t i = p; i < end; ++i) view_out[i] = mask_token;
        } else if (can_replace && w < c.random_end) {
          view_out[p] = static_cast<T>(random_id(a, c.specials, w2[k]));
          for (int64_t i = p + 1; i < end; ++i)
            view_out[i] = static_cast<T>(random_id(a, c.specials, stream_words(c.seed, key, static_cast<uint32_t>(i),
                                                                                kPurposeWholeWord).w[2]));
        }
      }
      if (packed < bound_predict) {
        if (capacity > 0) {
          int64_t& kept = counts[view];
          if (full[view] || kept + (end - p) > capacity) {
            full[view] = 1;
            continue;
          }
          int64_t* slots = positions + view * capacity;
          for (int64_t i = p; i < end; ++i) slots[kept++] = i;
        }
        T* view_labels = labels + view * length;
        if (stride == 1)
          copy_span<kVector>(view_labels, row, p, end, length, ignore);
        else
          for (int64_t i = p; i < end; ++i) view_labels[i] = row[i * stride];
      }
    }
  }
}

template <typename T>
void words_row_portable(const MaskTokensArgs& a, const Consts& c, int64_t b, uint64_t key, const T* row, int64_t n_valid,
                        int64_t select_t, int64_t predict_t, Scratch& scratch, WordScratch& ws) {
  words_row_body<T, false>(a, c, b, key, row, n_valid, select_t, predict_t, scratch, ws);
}

#ifdef FASTMASK_MASKING_X86
template <typename T>
__attribute__((target("avx2,bmi,bmi2,popcnt"))) void words_row_avx2(const MaskTokensArgs& a, const Consts& c, int64_t b,
                                                                  uint64_t key, const T* row, int64_t n_valid,
                                                                  int64_t select_t, int64_t predict_t, Scratch& scratch,
                                                                  WordScratch& ws) {
  words_row_body<T, true>(a, c, b, key, row, n_valid, select_t, predict_t, scratch, ws);
}
#endif

template <typename T>
void mask_tokens_typed(const MaskTokensArgs& a) {
  const Consts c{
      static_cast<uint64_t>(*a.seed),
      Specials(a.special_ids, a.num_special),
      a.thresholds[2],
      a.thresholds[2] + a.thresholds[3],
      a.vocab_size > 0,
      use_vector(a.num_special),
  };
  const int64_t select_t = clamp_threshold(a.thresholds[0]);
  const int64_t predict_t = clamp_threshold(a.thresholds[1]);
  const int64_t length = a.length;
  const bool has_masks = a.special_mask.data != nullptr || a.attention_mask.data != nullptr;
  const int64_t blocks = (length + kBlock - 1) / kBlock;

  parallel_for(a.batch, a.threads, [&](int64_t b) {
    thread_local Scratch scratch;
    // No keys: the row index is the key (fastmask.functional's default, without allocating it).
    const uint64_t key =
        static_cast<uint64_t>(a.keys.data == nullptr ? b : load_int(a.keys.data, a.keys.dtype, b, a.keys.stride[0]));
    const T* row = static_cast<const T*>(a.ids.data) + b * a.ids.stride[0];

    int64_t n_valid = length;
    if (a.lengths.data != nullptr)
      n_valid = std::min(std::max(load_int(a.lengths.data, a.lengths.dtype, b, a.lengths.stride[0]), int64_t{0}), length);

    if (a.word_source != kNoWordSource) {  // whole words
      thread_local WordScratch words;
#ifdef FASTMASK_MASKING_X86
      if (use_word_vector()) return words_row_avx2(a, c, b, key, row, n_valid, select_t, predict_t, scratch, words);
#endif
      return words_row_portable(a, c, b, key, row, n_valid, select_t, predict_t, scratch, words);
    }

    const uint8_t* flags = nullptr;
    if (has_masks) {  // padded with zeros to whole blocks (the vector path reads whole blocks)
      scratch.flags.assign(static_cast<size_t>(blocks * kBlock), 0);
      std::fill(scratch.flags.begin(), scratch.flags.begin() + length, uint8_t{1});
      if (a.special_mask.data != nullptr) and_mask_row(scratch.flags.data(), a.special_mask, b, length, true);
      if (a.attention_mask.data != nullptr) and_mask_row(scratch.flags.data(), a.attention_mask, b, length, false);
      flags = scratch.flags.data();
    }

    uint64_t bound_select, bound_predict;
    const uint32_t* stored = nullptr;
    if (a.exact) {
      // Pass 1: the row's words, the packed keys of its eligible positions, their histogram.
      scratch.words.resize(static_cast<size_t>(blocks * 4 * kBlock));
      scratch.packed.resize(static_cast<size_t>(length));
      uint64_t* keys = scratch.packed.data();
      int64_t histogram[256] = {};
      int64_t n = 0;
      for (int64_t block = 0; block < blocks; ++block) {
        const int64_t start = block * kBlock;
        auto& w = *reinterpret_cast<BlockWords*>(scratch.words.data() + 4 * start);
        draw_block(c.seed, key, static_cast<uint32_t>(start), w);
        const int64_t end = std::min<int64_t>(start + kBlock, n_valid);
        for (int64_t i = start; i < end; ++i) {
          const int64_t id = static_cast<int64_t>(row[i * a.ids.stride[1]]);
          const bool eligible = !c.specials.contains(id) && (flags == nullptr || flags[i]);
          const uint32_t w0 = w[0][i - start];
          keys[n] = (static_cast<uint64_t>(w0) << kPackShift) | static_cast<uint64_t>(i);
          n += eligible;
          histogram[w0 >> 24] += eligible;
        }
      }
      // k <= n since the thresholds are at most 2^32.
      bound_select = exact_bound(keys, n, count(select_t, n), histogram, scratch);
      bound_predict = exact_bound(keys, n, count(predict_t, n), histogram, scratch);
      stored = scratch.words.data();
    } else {
      bound_select = static_cast<uint64_t>(select_t) << kPackShift;
      bound_predict = static_cast<uint64_t>(predict_t) << kPackShift;
    }

    const RowQuery query{n_valid, a.vocab_size, bound_select, bound_predict, flags};
#ifdef FASTMASK_MASKING_X86
    if (c.vector) return write_row_avx2(a, c, b, key, row, stored, query, scratch);
#endif
    write_row_portable(a, c, b, key, row, stored, query, scratch);
  });
}

}  // namespace

void mask_tokens(const MaskTokensArgs& args) {
  switch (args.ids.dtype) {
    case kInt32: return mask_tokens_typed<int32_t>(args);
    case kInt64: return mask_tokens_typed<int64_t>(args);
    default: fail("input_ids: unsupported dtype code ", args.ids.dtype);
  }
}

// --- binding (fastmask/cpp/masking.py) --------------------------------------------------------

namespace {

void mask_tokens_entry(TensorView ids, TensorView seed, OptionalView keys, TensorView thresholds, TensorView special_ids,
                       OptionalView special_mask, OptionalView attention_mask, OptionalView lengths, int word_source,
                       OptionalView words, OptionalView replace_table, int64_t replace_count, int64_t mask_token_id,
                       int64_t views, bool exact, int64_t max_predictions, int64_t ignore_index, int64_t vocab_size,
                       TensorView out_ids, TensorView labels, TensorView positions, int threads) {
  MaskTokensArgs a;
  std::tie(a.batch, a.length) = matrix_shape(ids, "input_ids");
  a.ids = ids;
  a.seed = int64_data(seed, "seed");
  a.keys = keys;
  a.thresholds = int64_data(thresholds, "thresholds");
  a.special_ids = int64_data(special_ids, "special_ids");
  a.num_special = special_ids.numel();
  a.special_mask = special_mask;
  a.attention_mask = attention_mask;
  a.lengths = lengths;
  a.word_source = word_source;
  a.words = words;
  a.replace_table = replace_table;
  a.replace_count = replace_count;
  a.mask_token_id = mask_token_id;
  a.views = views;
  a.exact = exact;
  a.max_predictions = max_predictions;
  a.ignore_index = ignore_index;
  a.vocab_size = vocab_size;
  const int64_t rows = a.batch * views;
  a.out_ids = output<void>(out_ids, "out_ids", {rows, a.length});
  a.labels = output<void>(labels, "labels", {rows, a.length});
  a.positions = output<int64_t>(positions, "positions", {rows, max_predictions});
  a.threads = threads;
  mask_tokens(a);
}

}  // namespace

void bind_masking(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "mask_tokens", &mask_tokens_entry, py::arg("ids"), py::arg("seed"), py::arg("keys"),
             py::arg("thresholds"), py::arg("special_ids"), py::arg("special_mask"), py::arg("attention_mask"),
             py::arg("lengths"), py::arg("word_source"), py::arg("words"), py::arg("replace_table"),
             py::arg("replace_count"), py::arg("mask_token_id"), py::arg("views"), py::arg("exact"),
             py::arg("max_predictions"), py::arg("ignore_index"), py::arg("vocab_size"), py::arg("out_ids"),
             py::arg("labels"), py::arg("positions"), py::arg("threads"));
}

}  // namespace fastmask
