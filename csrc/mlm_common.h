// Shared by the masked-LM kernels (token masking in masking.cpp, whole-word masking in
// whole_word.cpp, span masking in spans.cpp): the special-id lookup, the replacement id, per-thread
// scratch, the per-call constants and the exact-count bound. Internal to csrc/.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "masking.h"
#include "philox_block.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FASTMASK_MASKING_X86 1
#endif

namespace fastmask::mlm {

constexpr int kPackShift = 31;  // packed key = (w0 << 31) | position, positions < 2^31
constexpr int64_t kTwo32 = int64_t{1} << 32;
constexpr int kBlock = kPhiloxBlock;  // 32 positions: one bit each in a uint32_t
using BlockWords = PhiloxBlockWords;

// A threshold outside [0, 2^32] decides like its clamped value (w0 is a uint32).
inline int64_t clamp_threshold(int64_t t) { return std::min(std::max(t, int64_t{0}), kTwo32); }

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

// The replacement id chosen by a word: Lemire's index into the table, or into [0, vocab) with the
// sorted special ids skipped. The product wraps like torch's int64 arithmetic would.
inline int64_t random_id(const TensorView& replace_table, int64_t replace_count, const Specials& specials, uint32_t word) {
  int64_t index = lemire(word, replace_count);
  if (replace_table.data != nullptr) return load_int(replace_table.data, replace_table.dtype, index, replace_table.stride[0]);
  for (int64_t k = 0; k < specials.size(); ++k) index += index >= specials[k];
  return index;
}

// or 0 for k = 0. A histogram of the top 8 bits of w0 finds the bucket holding the k-th key; only
// that bucket (about n / 256 keys) is partially sorted.
inline uint64_t exact_bound(const uint64_t* keys, int64_t n, int64_t k, const int64_t* histogram, Scratch& scratch) {
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

// Whole-word masking of one row (whole_word.cpp), instantiated for int32 and int64 ids.
template <typename T>
void whole_word_row(const MaskTokensArgs& a, const Consts& c, int64_t b, uint64_t key, const T* row, int64_t n_valid,
                    int64_t select_t, int64_t predict_t, Scratch& scratch);

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
#endif

}  // namespace fastmask::mlm
