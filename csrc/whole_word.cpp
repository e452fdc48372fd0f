// Whole-word masking: mask_tokens with a word source (masking.h), bit-identical to
// fastmask/reference/masking.py.
//
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
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "bits64.h"
#include "common.h"
#include "masking.h"
#include "mlm_common.h"
#include "philox.h"

namespace fastmask::mlm {
namespace {

// Per-thread buffers of the whole-word rows.
struct WordScratch {
  std::vector<uint64_t> eligible;  // bit set of the eligible tokens, two zero words past the end
  std::vector<uint32_t> first;     // positions of the words' first tokens, in order
  std::vector<uint32_t> draws;     // their Philox words: [4][capacity]
  std::vector<uint64_t> chosen;    // bit set over the words: selected or predicted
};

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
          view_out[p] = static_cast<T>(random_id(a.replace_table, a.replace_count, c.specials, w2[k]));
          for (int64_t i = p + 1; i < end; ++i)
            view_out[i] = static_cast<T>(random_id(a.replace_table, a.replace_count, c.specials, stream_words(c.seed, key, static_cast<uint32_t>(i),
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

// The whole-word rows' AVX2 path also takes BMI1/2 (tzcnt): every AVX2 CPU but a few has them.
bool use_word_vector() {
#ifdef FASTMASK_MASKING_X86
  static const bool yes = philox_block_avx2() && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  return yes;
#else
  return false;
#endif
}

}  // namespace

template <typename T>
void whole_word_row(const MaskTokensArgs& a, const Consts& c, int64_t b, uint64_t key, const T* row, int64_t n_valid,
                    int64_t select_t, int64_t predict_t, Scratch& scratch) {
  thread_local WordScratch words;
#ifdef FASTMASK_MASKING_X86
  if (use_word_vector()) return words_row_avx2(a, c, b, key, row, n_valid, select_t, predict_t, scratch, words);
#endif
  words_row_portable(a, c, b, key, row, n_valid, select_t, predict_t, scratch, words);
}

template void whole_word_row<int32_t>(const MaskTokensArgs&, const Consts&, int64_t, uint64_t, const int32_t*, int64_t,
                                      int64_t, int64_t, Scratch&);
template void whole_word_row<int64_t>(const MaskTokensArgs&, const Consts&, int64_t, uint64_t, const int64_t*, int64_t,
                                      int64_t, int64_t, Scratch&);

}  // namespace fastmask::mlm
