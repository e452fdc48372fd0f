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

#include <algorithm>
#include <cstring>
#include <vector>

#include "common.h"
#include "philox.h"
#include "philox_block.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FASTMASK_MASKING_X86 1
#endif

namespace fastmask {
namespace {

constexpr uint32_t kPurposeMlmTokens = 1;  // fastmask._rng.Purpose.MLM_TOKENS
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
void and_mask_row(uint8_t* flags, const IntView& mask, int64_t row, int64_t length, bool want_zero) {
  const int64_t offset = row * mask.stride0;
  switch (mask.dtype) {
    case kBool:
    case kUInt8:
      return and_mask(flags, static_cast<const uint8_t*>(mask.data) + offset, mask.stride1, length, want_zero);
    case kInt32:
      return and_mask(flags, static_cast<const int32_t*>(mask.data) + offset, mask.stride1, length, want_zero);
    case kInt64:
      return and_mask(flags, static_cast<const int64_t*>(mask.data) + offset, mask.stride1, length, want_zero);
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
    return load_int(a.replace_table.data, a.replace_table.dtype, index, a.replace_table.stride0);
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
  const int64_t stride = a.ids.stride1;
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
        static_cast<uint64_t>(a.keys.data == nullptr ? b : load_int(a.keys.data, a.keys.dtype, b, a.keys.stride0));
    const T* row = static_cast<const T*>(a.ids.data) + b * a.ids.stride0;

    int64_t n_valid = length;
    if (a.lengths.data != nullptr)
      n_valid = std::min(std::max(load_int(a.lengths.data, a.lengths.dtype, b, a.lengths.stride0), int64_t{0}), length);

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
          const int64_t id = static_cast<int64_t>(row[i * a.ids.stride1]);
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

}  // namespace fastmask
