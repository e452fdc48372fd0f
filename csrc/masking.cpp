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
#include <tuple>
#include <type_traits>

#include "binding.h"
#include "common.h"
#include "mlm_common.h"
#include "philox.h"
#include "philox_block.h"

namespace fastmask::mlm {
namespace {

inline void draw_block(uint64_t seed, uint64_t key, uint32_t first, BlockWords& words) {
  philox_block(seed, key, kPurposeMlmTokens, first, words);
}


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
        corrupted = static_cast<T>(random_id(a.replace_table, a.replace_count, c.specials, w[2][l]));
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
    const uint64_t key = row_key(a.keys, b);
    const T* row = static_cast<const T*>(a.ids.data) + b * a.ids.stride[0];

    int64_t n_valid = length;
    if (a.lengths.data != nullptr)
      n_valid = std::min(std::max(load_int(a.lengths.data, a.lengths.dtype, b, a.lengths.stride[0]), int64_t{0}), length);

    if (a.word_source != kNoWordSource) return whole_word_row(a, c, b, key, row, n_valid, select_t, predict_t, scratch);

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
}  // namespace fastmask::mlm

namespace fastmask {

void mask_tokens(const MaskTokensArgs& args) {
  switch (args.ids.dtype) {
    case kInt32: return mlm::mask_tokens_typed<int32_t>(args);
    case kInt64: return mlm::mask_tokens_typed<int64_t>(args);
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
