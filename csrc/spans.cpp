// Span and n-gram masking (docs/spans.md): per row, one pass finds the words, the attempt loop
// touches only the words a span grows over, one pass writes the outputs. Rows in parallel.
#include "spans.h"

#include "binding.h"

#include <algorithm>
#include <tuple>
#include <vector>

#include "common.h"
#include "mlm_common.h"
#include "philox.h"

namespace fastmask {
namespace {

constexpr uint8_t kNone = 0, kMask = 1, kRandom = 2, kKeep = 3;

struct Scratch {
  std::vector<int32_t> token_word;   // word index of each token, -1 if not eligible
  std::vector<int32_t> word_first;   // first token of each word
  std::vector<int32_t> word_size;    // tokens of each word
  std::vector<uint8_t> word_kind;    // kNone or the span's kind
};

template <typename T>
void mask_row(const MaskSpansArgs& a, const mlm::Specials& specials, int64_t b, Scratch& s) {
  const int64_t L = a.length;
  const uint64_t seed = static_cast<uint64_t>(*a.seed);
  const uint64_t key = row_key(a.keys, b);
  const T* ids = static_cast<const T*>(a.ids.data) + b * a.ids.stride[0];
  const int64_t ids_stride = a.ids.stride[1];
  s.token_word.resize(L);

  // Pass 1: eligibility and words (plain locals: no reload through aliasing stores).
  s.word_first.resize(L);
  s.word_size.resize(L);
  int32_t* __restrict token_word = s.token_word.data();
  int32_t* __restrict word_first = s.word_first.data();
  int32_t* __restrict word_size = s.word_size.data();
  int64_t eligible_count = 0;
  int32_t words_so_far = 0;
  bool previous = false;
  const uint8_t* codes = a.codes.data ? static_cast<const uint8_t*>(a.codes.data) + b * a.codes.stride[0] : nullptr;
  const int64_t codes_stride = a.codes.stride[1], vocab_size = a.vocab_size;
  const bool has_special_mask = a.special_mask.data != nullptr, has_attention = a.attention_mask.data != nullptr;
  for (int64_t i = 0; i < L; ++i) {
    const int64_t id = static_cast<int64_t>(ids[i * ids_stride]);
    if (vocab_size > 0 && (id < 0 || id >= vocab_size))
      fail("input_ids: id ", id, " at position (", b, ", ", i, ") is outside the vocabulary [0, ", vocab_size, ")");
    const uint8_t code = codes ? codes[i * codes_stride] : kWordStarts;
    bool eligible = code != kNoWord && !specials.contains(id);
    if (eligible && has_special_mask)
      eligible = load_int(a.special_mask.data, a.special_mask.dtype, b * a.special_mask.stride[0] + i * a.special_mask.stride[1], 1) == 0;
    if (eligible && has_attention)
      eligible = load_int(a.attention_mask.data, a.attention_mask.dtype, b * a.attention_mask.stride[0] + i * a.attention_mask.stride[1], 1) != 0;
    if (eligible) {
      if (code == kWordStarts || !previous) {
        word_first[words_so_far] = static_cast<int32_t>(i);
        word_size[words_so_far++] = 0;
      }
      ++word_size[words_so_far - 1];
      ++eligible_count;
      token_word[i] = words_so_far - 1;
    } else {
      token_word[i] = -1;
    }
    previous = eligible;
  }

  // The attempts (docs/spans.md).
  const int64_t num_words = words_so_far;
  s.word_kind.assign(num_words, kNone);
  const int64_t budget = count(a.select_threshold, eligible_count);
  const int64_t cap = std::min<int64_t>(4 * budget + 16, (int64_t{1} << 31) - 1);
  int64_t masked = 0;
  for (int64_t attempt = 0; masked < budget && attempt < cap; ++attempt) {
    const Words4 w = stream_words(seed, key, static_cast<uint32_t>(attempt), kPurposeSpans);
    const int64_t start = lemire(w.w[0], num_words);
    if (s.word_kind[start] != kNone) continue;
    int64_t span = 1;
    for (int64_t j = 0; j < a.table_size; ++j) span += static_cast<int64_t>(w.w[1]) >= a.table[j];
    int64_t end = start, size = 0;
    while (end < num_words && end - start < span && s.word_kind[end] == kNone && masked + size + s.word_size[end] <= budget)
      size += s.word_size[end++];
    if (end == start) continue;
    const int64_t w2 = w.w[2];
    const uint8_t kind = w2 < a.mask_threshold ? kMask : (w2 < a.mask_threshold + a.random_threshold ? kRandom : kKeep);
    for (int64_t k = start; k < end; ++k) s.word_kind[k] = kind;
    masked += size;
  }

  // Pass 2: outputs, with the capacity in whole words.
  const int64_t K = a.max_predictions;
  int64_t cut_word = num_words;  // words from this one on lose their labels
  if (K > 0) {
    int64_t filled = 0;
    for (int64_t k = 0; k < num_words; ++k) {
      if (s.word_kind[k] == kNone) continue;
      if (filled + s.word_size[k] > K) {
        cut_word = k;
        break;
      }
      filled += s.word_size[k];
    }
  }
  T* __restrict out = static_cast<T*>(a.out_ids) + b * L;
  T* __restrict labels = static_cast<T*>(a.labels) + b * L;
  int64_t* __restrict positions = a.positions + b * K;
  int64_t slot = 0;
  const T ignore = static_cast<T>(a.ignore_index);
  const T mask_id = static_cast<T>(a.mask_token_id);
  const bool can_replace = a.replace_count > 0;
  const uint8_t* __restrict word_kind = s.word_kind.data();
  for (int64_t i = 0; i < L; ++i) {
    const T id = ids[i * ids_stride];
    const int32_t word = token_word[i];
    const uint8_t kind = word >= 0 ? word_kind[word] : kNone;
    if (kind == kNone) {
      out[i] = id;
      labels[i] = ignore;
      continue;
    }
    if (kind == kMask) {
      out[i] = mask_id;
    } else if (kind == kRandom && can_replace) {
      out[i] = static_cast<T>(mlm::random_id(a.replace_table, a.replace_count, specials,
                                             stream_words(seed, key, static_cast<uint32_t>(i), kPurposeSpans).w[3]));
    } else {
      out[i] = id;
    }
    if (word < cut_word) {
      labels[i] = id;
      if (K > 0) positions[slot++] = i;
    } else {
      labels[i] = ignore;
    }
  }
  for (; slot < K; ++slot) positions[slot] = -1;
}

}  // namespace

void mask_spans(const MaskSpansArgs& a) {
  const mlm::Specials specials(a.special_ids, a.num_special);
  parallel_for(a.batch, a.threads, [&](int64_t b) {
    thread_local Scratch scratch;
    if (a.ids.dtype == kInt32)
      mask_row<int32_t>(a, specials, b, scratch);
    else
      mask_row<int64_t>(a, specials, b, scratch);
  });
}

// --- binding (fastmask/cpp/spans.py) -----------------------------------------------------------

namespace {

void mask_spans_entry(TensorView ids, TensorView seed, OptionalView keys, TensorView thresholds, TensorView table,
                      TensorView special_ids, OptionalView special_mask, OptionalView attention_mask, OptionalView codes,
                      OptionalView replace_table, int64_t replace_count, int64_t mask_token_id, int64_t max_predictions,
                      int64_t ignore_index, int64_t vocab_size, TensorView out_ids, TensorView labels,
                      TensorView positions, int threads) {
  MaskSpansArgs a;
  std::tie(a.batch, a.length) = matrix_shape(ids, "input_ids");
  if (thresholds.numel() != 3) fail("thresholds: expected (select, mask, random)");
  const int64_t* t = int64_data(thresholds, "thresholds");
  a.ids = ids;
  a.seed = int64_data(seed, "seed");
  a.keys = keys;
  a.select_threshold = t[0];
  a.mask_threshold = t[1];
  a.random_threshold = t[2];
  a.table = int64_data(table, "table");
  a.table_size = table.numel();
  a.special_ids = int64_data(special_ids, "special_ids");
  a.num_special = special_ids.numel();
  a.special_mask = special_mask;
  a.attention_mask = attention_mask;
  if (codes.given() && codes.dtype != kUInt8) fail("words: expected uint8 word codes");
  a.codes = codes;
  a.replace_table = replace_table;
  a.replace_count = replace_count;
  a.mask_token_id = mask_token_id;
  a.max_predictions = max_predictions;
  a.ignore_index = ignore_index;
  a.vocab_size = vocab_size;
  a.out_ids = output<void>(out_ids, "out_ids", {a.batch, a.length});
  a.labels = output<void>(labels, "labels", {a.batch, a.length});
  a.positions = output<int64_t>(positions, "positions", {a.batch, max_predictions});
  a.threads = threads;
  mask_spans(a);
}

}  // namespace

void bind_spans(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "mask_spans", &mask_spans_entry, py::arg("ids"), py::arg("seed"), py::arg("keys"), py::arg("thresholds"),
             py::arg("table"), py::arg("special_ids"), py::arg("special_mask"), py::arg("attention_mask"),
             py::arg("codes"), py::arg("replace_table"), py::arg("replace_count"), py::arg("mask_token_id"),
             py::arg("max_predictions"), py::arg("ignore_index"), py::arg("vocab_size"), py::arg("out_ids"),
             py::arg("labels"), py::arg("positions"), py::arg("threads"));
}

}  // namespace fastmask
