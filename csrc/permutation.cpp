// Permutation language modeling (XLNet): per row, one Philox call per position (purpose PERMUTATION)
// gives span p's length (w0) and start (w1) and slot p's order key (w2); the spans are walked as HF
// walks them, the order keys are ranked by a sort, and each perm_mask row is a compare of int32 keys
// against one row of column keys, written once (no zero fill first).
#include "permutation.h"

#include <algorithm>
#include <cstring>
#include <tuple>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "binding.h"
#include "common.h"
#include "philox_block.h"

namespace fastmask {
namespace {


inline int64_t lemire(uint32_t word, int64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(word) * static_cast<uint64_t>(n)) >> 32);
}

struct Scratch {
  std::vector<uint32_t> w0, w1, w2;
  std::vector<uint8_t> masked, functional;
  std::vector<uint64_t> order;
  std::vector<int32_t> rank, row_key, column_key;
  mutable std::vector<int16_t> column16;
};

// The bits of a 1 of each dtype code, stored as an unsigned integer of the dtype's width.
template <typename U>
U one_bits(int dtype) {
  switch (dtype) {
    case kFloat32: return static_cast<U>(0x3F800000u);
    case kFloat64: return static_cast<U>(0x3FF0000000000000ull);
    case kFloat16: return static_cast<U>(0x3C00u);
    case kBFloat16: return static_cast<U>(0x3F80u);
    default: return static_cast<U>(1);  // bool, uint8, int32, int64
  }
}

#if defined(__SSE2__)
// Bytes (bool, uint8) with keys that fit int16 (rows up to 32767): 16 outputs per compare and pack.
void write_byte_rows(const Scratch& s, int64_t length, uint8_t* out) {
  std::vector<int16_t>& column = s.column16;
  const __m128i ones = _mm_set1_epi8(1);
  for (int64_t i = 0; i < length; ++i) {
    const int16_t key = static_cast<int16_t>(s.row_key[i]);
    const __m128i k = _mm_set1_epi16(key);
    uint8_t* row = out + i * length;
    int64_t j = 0;
    for (; j + 16 <= length; j += 16) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(column.data() + j));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(column.data() + j + 8));
      const __m128i above = _mm_packs_epi16(_mm_cmpgt_epi16(k, a), _mm_cmpgt_epi16(k, b));  // key > column: 0xFF
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + j), _mm_andnot_si128(above, ones));
    }
    for (; j < length; ++j) row[j] = key <= column[j];
  }
}

// 4-byte outputs (float32, int32): 4 per compare, streamed past the cache (a [B, L, L] float32 plane
// is larger than the cache, and is not read back here).
void write_word_rows(const Scratch& s, int64_t length, int dtype, uint32_t* out) {
  const int32_t* column = s.column_key.data();
  const __m128i one = _mm_set1_epi32(static_cast<int32_t>(one_bits<uint32_t>(dtype)));
  for (int64_t i = 0; i < length; ++i) {
    const int32_t key = s.row_key[i];
    const __m128i k = _mm_set1_epi32(key);
    uint32_t* row = out + i * length;
    int64_t j = 0;
    for (; j < length && (reinterpret_cast<std::uintptr_t>(row + j) & 15); ++j)
      row[j] = key <= column[j] ? one_bits<uint32_t>(dtype) : 0;
    for (; j + 4 <= length; j += 4) {
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(column + j));
      _mm_stream_si128(reinterpret_cast<__m128i*>(row + j), _mm_andnot_si128(_mm_cmpgt_epi32(k, c), one));
    }
    for (; j < length; ++j) row[j] = key <= column[j] ? one_bits<uint32_t>(dtype) : 0;
  }
  _mm_sfence();
}
#endif

template <typename U>
void write_rows(const Scratch& s, int64_t length, int dtype, U* out) {
  const U one = one_bits<U>(dtype);
  const int32_t* column = s.column_key.data();
  for (int64_t i = 0; i < length; ++i) {
    const int32_t key = s.row_key[i];
    U* row = out + i * length;
    for (int64_t j = 0; j < length; ++j) row[j] = key <= column[j] ? one : U(0);  // compare and select: vectorizes
  }
}

template <typename T>
void write_ids(const Scratch& s, const PermutationArgs& a, int64_t b) {
  T* out = static_cast<T*>(a.out_ids) + b * a.length;
  T* labels = static_cast<T*>(a.labels) + b * a.length;
  for (int64_t t = 0; t < a.length; ++t) {
    const int64_t id = load_int(a.ids, a.ids_dtype, b * a.ids_stride0 + t * a.ids_stride1, 1);
    out[t] = static_cast<T>(s.masked[t] ? a.mask_token_id : id);
    labels[t] = static_cast<T>(s.masked[t] ? id : a.ignore_index);
  }
}

void permutation_row(const PermutationArgs& a, int64_t b, Scratch& s) {
  const int64_t length = a.length, half = length / 2;
  const uint64_t seed = static_cast<uint64_t>(*a.seed);
  const uint64_t key = static_cast<uint64_t>(load_int(a.keys, a.keys_dtype, b, a.keys_stride));
  const int64_t words = std::max(a.attempts, half);
  s.w0.resize(words);
  s.w1.resize(words);
  s.w2.resize(words);
  PhiloxBlockWords w;
  for (int64_t first = 0; first < words; first += kPhiloxBlock) {
    philox_block(seed, key, kPurposePermutation, static_cast<uint32_t>(first), w);
    const int64_t end = std::min<int64_t>(kPhiloxBlock, words - first);
    for (int64_t l = 0; l < end; ++l) {
      s.w0[first + l] = w[0][l];
      s.w1[first + l] = w[1][l];
      s.w2[first + l] = w[2][l];
    }
  }
  // The spans, as HF walks them: one per context, until the contexts pass the row's end.
  s.masked.assign(length, 0);
  int64_t cursor = 0;
  for (int64_t p = 0; p < a.attempts && cursor < length; ++p) {
    const int64_t span = 1 + lemire(s.w0[p], a.max_span);
    const int64_t context = a.contexts[span - 1];
    const int64_t start = cursor + lemire(s.w1[p], context - span + 1);
    for (int64_t t = start; t < std::min(start + span, length); ++t) s.masked[t] = 1;
    cursor += context;
  }
  s.functional.resize(length);
  for (int64_t t = 0; t < length; ++t) {
    const int64_t id = load_int(a.ids, a.ids_dtype, b * a.ids_stride0 + t * a.ids_stride1, 1);
    s.functional[t] = std::binary_search(a.functional, a.functional + a.num_functional, id);
    if (s.functional[t]) s.masked[t] = 0;
  }
  // The factorisation order: slot k's rank among the order keys (w2, k); the upper half follows.
  s.order.resize(half);
  for (int64_t k = 0; k < half; ++k) s.order[k] = (static_cast<uint64_t>(s.w2[k]) << 30) | static_cast<uint64_t>(k);
  std::sort(s.order.begin(), s.order.end());
  s.rank.resize(half);
  for (int64_t r = 0; r < half; ++r) s.rank[s.order[r] & ((uint64_t{1} << 30) - 1)] = static_cast<int32_t>(r);
  s.row_key.resize(length);
  s.column_key.resize(length);
  for (int64_t t = 0; t < length; ++t) {
    const int32_t index = static_cast<int32_t>(t < half ? s.rank[t] : half + s.rank[t - half]);
    s.row_key[t] = !s.masked[t] && !s.functional[t] ? -1 : index;  // free tokens: seen by all, see no target
    s.column_key[t] = s.masked[t] ? index : -2;
  }

  const int64_t plane = length * length;
  switch (a.perm_dtype) {
    case kFloat64: case kInt64:
      write_rows(s, length, a.perm_dtype, static_cast<uint64_t*>(a.perm_mask) + b * plane); break;
    case kFloat32: case kInt32:
#if defined(__SSE2__)
      write_word_rows(s, length, a.perm_dtype, static_cast<uint32_t*>(a.perm_mask) + b * plane); break;
#else
      write_rows(s, length, a.perm_dtype, static_cast<uint32_t*>(a.perm_mask) + b * plane); break;
#endif
    case kFloat16: case kBFloat16:
      write_rows(s, length, a.perm_dtype, static_cast<uint16_t*>(a.perm_mask) + b * plane); break;
    default:
#if defined(__SSE2__)
      if (length <= 32767) {
        s.column16.assign(s.column_key.begin(), s.column_key.end());
        write_byte_rows(s, length, static_cast<uint8_t*>(a.perm_mask) + b * plane);
        break;
      }
#endif
      write_rows(s, length, a.perm_dtype, static_cast<uint8_t*>(a.perm_mask) + b * plane); break;
  }
  if (a.ids_dtype == kInt32)
    write_ids<int32_t>(s, a, b);
  else
    write_ids<int64_t>(s, a, b);
}

}  // namespace

void permutation_lm(const PermutationArgs& a) {
  if (a.length % 2) fail("permutation_lm: the sequence length must be even, got ", a.length);
  if (a.ids_dtype != kInt32 && a.ids_dtype != kInt64) fail("permutation_lm: input_ids must be int32 or int64");
  parallel_for(a.batch, a.threads, [&](int64_t b) {
    static thread_local Scratch scratch;
    permutation_row(a, b, scratch);
  });
}

namespace {

void permutation_lm_entry(TensorView ids, TensorView seed, TensorView keys, TensorView contexts, int64_t attempts,
                          TensorView functional, int64_t mask_token_id, int64_t ignore_index, TensorView out_ids,
                          TensorView labels, TensorView perm_mask, int threads) {
  PermutationArgs a;
  std::tie(a.batch, a.length) = matrix_shape(ids, "input_ids");
  a.ids = ids.data;
  a.ids_dtype = ids.dtype;
  a.ids_stride0 = ids.stride[0];
  a.ids_stride1 = ids.stride[1];
  a.seed = int64_data(seed, "seed");
  a.keys = keys.data;
  a.keys_dtype = keys.dtype;
  a.keys_stride = keys.stride[0];
  a.contexts = int64_data(contexts, "contexts");
  a.max_span = contexts.numel();
  a.attempts = attempts;
  a.functional = int64_data(functional, "functional_ids");
  a.num_functional = functional.numel();
  a.mask_token_id = mask_token_id;
  a.ignore_index = ignore_index;
  a.out_ids = output<void>(out_ids, "out_ids", {a.batch, a.length});
  a.labels = output<void>(labels, "labels", {a.batch, a.length});
  a.perm_mask = output<void>(perm_mask, "perm_mask", {a.batch, a.length, a.length});
  a.perm_dtype = perm_mask.dtype;
  a.threads = threads;
  permutation_lm(a);
}

}  // namespace

void bind_permutation(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "permutation_lm", &permutation_lm_entry, py::arg("ids"), py::arg("seed"), py::arg("keys"),
             py::arg("contexts"), py::arg("attempts"), py::arg("functional_ids"), py::arg("mask_token_id"),
             py::arg("ignore_index"), py::arg("out_ids"), py::arg("labels"), py::arg("perm_mask"),
             py::arg("threads"));
}

}  // namespace fastmask
