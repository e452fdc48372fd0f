// T5 span corruption with sentinels and UL2 mixtures (docs/t5.md), bit-identical to
// fastmask/reference/t5.py. One task per row:
//   1. the row's denoiser and noise count (purpose UL2_DENOISER, position 0; skipped for one fixed
//      denoiser, whose draw cannot change anything);
//   2. the words of the gaps, 64 at a time (purpose T5_SPANS, position g / 2: words g % 2 for the
//      noise gaps, 2 + g % 2 for the non-noise gaps); the gaps with a word below a threshold are the
//      candidates, packed as (word << 31) | gap;
//   3. the (K-1)-th smallest candidate key of each kind: a histogram of the candidates' words finds
//      its bucket, nth_element that bucket (about one key);
//   4. one ordered pass over the candidates lists the cut gaps, then the row is copied segment by
//      segment.
#include "t5.h"

#include "binding.h"
#include <tuple>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "common.h"
#include "philox.h"
#include "philox_block.h"

namespace fastmask {
namespace {

constexpr int kPackShift = 31;
constexpr int kTableColumns = 5;

struct Scratch {
  std::vector<uint64_t> cand_noise, cand_plain;  // candidate packed keys, in gap order
  std::vector<int64_t> cuts_noise, cuts_plain;   // cut gaps, ascending
  std::vector<int32_t> histogram;
  std::vector<uint64_t> work;
};

// Word threshold for the candidates of the k smallest of n uniform words: about k + 2 sqrt(k) + 2
// words expected below it, so it seldom holds fewer than k (2% of the rows at L = 568; those draw
// again with every gap a candidate). Any threshold gives the same cuts: when at least k words are
// below it, the k smallest keys are among them.
uint64_t candidate_threshold(int64_t n, int64_t k) {
  const double expected = static_cast<double>(k) + 2.0 * std::sqrt(static_cast<double>(k)) + 2.0;
  if (expected >= static_cast<double>(n)) return uint64_t{1} << 32;
  return static_cast<uint64_t>(expected / static_cast<double>(n) * 4294967296.0);
}

// The gaps of one block: kGapsPerBlock = 2 * kPhiloxBlock, gap first + l has word words[l % 2][l / 2]
// (words: the block's even- and odd-gap word rows).
constexpr int kGapsPerBlock = 2 * kPhiloxBlock;

// Packed keys of the gaps whose word is below the threshold, appended in gap order, branch-free
// (keys has room for one more than the count); returns the new count.
inline int64_t append_candidates_scalar(const uint32_t* even, const uint32_t* odd, int64_t first, int count,
                                        uint64_t threshold, uint64_t* keys, int64_t c) {
  for (int l = 0; l < count; ++l) {
    const uint32_t word = (l & 1) ? odd[l >> 1] : even[l >> 1];
    keys[c] = (static_cast<uint64_t>(word) << kPackShift) | static_cast<uint64_t>(first + l);
    c += static_cast<uint64_t>(word) < threshold;
  }
  return c;
}

#if defined(__x86_64__) || defined(_M_X64)
__attribute__((target("avx2"))) inline uint32_t below_mask(const uint32_t* words, uint64_t threshold) {
  const __m256i flip = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i bound = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(threshold) ^ 0x80000000u));
  uint32_t mask = 0;
  for (int v = 0; v < kPhiloxBlock / 8; ++v) {
    const __m256i w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + 8 * v)), flip);
    const uint32_t bits = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(bound, w))));
    mask |= bits << (8 * v);
  }
  return mask;
}

// The same for a block: the gaps below the threshold as one 64-bit mask (the even and odd gaps'
// masks interleaved), then one append per candidate (about 1 gap in 10).
__attribute__((target("avx2,bmi,bmi2"))) int64_t append_candidates_avx2(const uint32_t* even, const uint32_t* odd,
                                                                        int64_t first, int count, uint64_t threshold,
                                                                        uint64_t* keys, int64_t c) {
  uint64_t mask = ~uint64_t{0};
  if (threshold < (uint64_t{1} << 32))
    mask = _pdep_u64(below_mask(even, threshold), 0x5555555555555555ull) |
           _pdep_u64(below_mask(odd, threshold), 0xAAAAAAAAAAAAAAAAull);
  if (count < kGapsPerBlock) mask &= (uint64_t{1} << count) - 1;
  while (mask) {
    const int l = static_cast<int>(_tzcnt_u64(mask));
    const uint32_t word = (l & 1) ? odd[l >> 1] : even[l >> 1];
    keys[c++] = (static_cast<uint64_t>(word) << kPackShift) | static_cast<uint64_t>(first + l);
    mask &= mask - 1;
  }
  return c;
}
#endif

inline int64_t append_candidates(bool avx2, const uint32_t* even, const uint32_t* odd, int64_t first, int count,
                                 uint64_t threshold, uint64_t* keys, int64_t c) {
  if (count <= 0) return c;
#if defined(__x86_64__) || defined(_M_X64)
  if (avx2) return append_candidates_avx2(even, odd, first, count, threshold, keys, c);
#endif
  return append_candidates_scalar(even, odd, first, count, threshold, keys, c);
}

// The gaps of the k smallest of c distinct candidate keys (given in gap order, words below
// threshold), ascending, into cuts: a histogram of the words over buckets of [0, threshold) finds
// the bucket of the k-th smallest key, nth_element within that bucket (about one key) finds it.
void smallest_in_order(const uint64_t* keys, int64_t c, int64_t k, uint64_t threshold, int64_t* cuts,
                       std::vector<int32_t>& histogram, std::vector<uint64_t>& bucket) {
  constexpr uint64_t kGapMask = (uint64_t{1} << kPackShift) - 1;
  int shift = 6;  // about one candidate per bucket, from 64 to 4096 buckets
  while (shift < 12 && (int64_t{1} << shift) < c) ++shift;
  const int64_t buckets = int64_t{1} << shift;
  // bucket(word) = (word * scale) >> 32 < buckets, nondecreasing in the word.
  const uint64_t scale = (static_cast<uint64_t>(buckets) << 32) / threshold;
  if (histogram.size() < static_cast<size_t>(buckets)) histogram.resize(static_cast<size_t>(buckets));
  int32_t* h = histogram.data();
  std::memset(h, 0, static_cast<size_t>(buckets) * sizeof(int32_t));
  for (int64_t i = 0; i < c; ++i) ++h[((keys[i] >> kPackShift) * scale) >> 32];
  int64_t below = 0, b = 0;
  while (below + h[b] < k) below += h[b++];
  // The bucket's keys, branch-free (room for one more than their number).
  if (bucket.size() < static_cast<size_t>(h[b] + 1)) bucket.resize(static_cast<size_t>(h[b] + 1));
  uint64_t* in_bucket = bucket.data();
  int64_t m = 0;
  for (int64_t i = 0; i < c; ++i) {
    in_bucket[m] = keys[i];
    m += static_cast<int64_t>(((keys[i] >> kPackShift) * scale) >> 32) == b;
  }
  const int64_t rank = k - below - 1;
  if (m > 1) std::nth_element(in_bucket, in_bucket + rank, in_bucket + m);
  const uint64_t bound = in_bucket[rank] + 1;
  int64_t n = 0;
  for (int64_t i = 0; i < c; ++i) {
    cuts[n] = static_cast<int64_t>(keys[i] & kGapMask);
    n += keys[i] < bound;
  }
}

// n items of a row from item `from` to out. stride 1 with room (room_out, room_row: the items that
// may be written at out, read from row + from) copies whole 64-byte chunks: the copies go in
// ascending output order, so whatever a chunk writes past the run is written again afterwards.
template <typename T>
inline void copy_run(T* out, const T* row, int64_t from, int64_t n, int64_t stride, int64_t room_out, int64_t room_row) {
  constexpr int64_t kChunk = 32 / sizeof(T);
  if (stride == 1) {
    const T* src = row + from;
    const int64_t whole = (n + 2 * kChunk - 1) & ~(2 * kChunk - 1);
    if (whole <= room_out && whole <= room_row) {
      for (int64_t m = 0; m < n; m += 2 * kChunk) {  // 64 bytes an iteration
        std::memcpy(out + m, src + m, 32);
        std::memcpy(out + m + kChunk, src + m + kChunk, 32);
      }
    } else {
      for (int64_t m = 0; m < n; ++m) out[m] = src[m];
    }
  } else {
    for (int64_t m = 0; m < n; ++m) out[m] = row[(from + m) * stride];
  }
}

struct RowEnds {
  int64_t inputs, targets;
};

// The segments and sentinels of one row (sentinel_ids nullptr: none); returns the output lengths so far.
template <typename T>
__attribute__((always_inline)) inline RowEnds write_segments(const T* row, int64_t stride, int64_t length, T* in,
                                                             int64_t in_width, T* tg, int64_t tg_width, int64_t spans,
                                                             int64_t plain, int64_t noise, const int64_t* cuts_plain,
                                                             const int64_t* cuts_noise, const int64_t* sentinel_ids) {
  int64_t x = 0, ip = 0, tp = 0, end_plain = 0, end_noise = 0;
  for (int64_t i = 0; i < spans; ++i) {
    const int64_t next_plain = i < spans - 1 ? cuts_plain[i] + 1 : plain;
    copy_run(in + ip, row, x, next_plain - end_plain, stride, in_width - ip, length - x);
    ip += next_plain - end_plain;
    x += next_plain - end_plain;
    end_plain = next_plain;
    if (sentinel_ids != nullptr) {
      const T sentinel = static_cast<T>(sentinel_ids[i]);
      in[ip++] = sentinel;
      tg[tp++] = sentinel;
    }
    const int64_t next_noise = i < spans - 1 ? cuts_noise[i] + 1 : noise;
    copy_run(tg + tp, row, x, next_noise - end_noise, stride, tg_width - tp, length - x);
    tp += next_noise - end_noise;
    x += next_noise - end_noise;
    end_noise = next_noise;
  }
  return {ip, tp};
}

#define FASTMASK_T5_ROW_PARAMS                                                                              \
  const T *row, int64_t stride, int64_t length, T *in, int64_t in_width, T *tg, int64_t tg_width, int64_t spans, \
      int64_t plain, int64_t noise, const int64_t *cuts_plain, const int64_t *cuts_noise,                       \
      const int64_t *sentinel_ids
#define FASTMASK_T5_ROW_ARGS \
  row, stride, length, in, in_width, tg, tg_width, spans, plain, noise, cuts_plain, cuts_noise, sentinel_ids

template <typename T>
RowEnds write_segments_default(FASTMASK_T5_ROW_PARAMS) {
  return write_segments<T>(FASTMASK_T5_ROW_ARGS);
}

// The same compiled for AVX2: each 32-byte chunk copy is one load and one store.
template <typename T>
#if defined(__x86_64__) || defined(_M_X64)
__attribute__((target("avx2")))
#endif
RowEnds write_segments_avx2(FASTMASK_T5_ROW_PARAMS) {
  return write_segments<T>(FASTMASK_T5_ROW_ARGS);
}
#undef FASTMASK_T5_ROW_PARAMS
#undef FASTMASK_T5_ROW_ARGS

void check_token(const char* name, int64_t id, int64_t vocab_size) {
  if (id < 0 || id >= vocab_size) fail(name, ": id ", id, " is outside the vocabulary [0, ", vocab_size, ")");
}

// Every id of the row in [0, vocab_size): one unsigned compare per id, the error only after the scan.
template <typename T>
void check_row_ids(const T* row, int64_t stride, int64_t length, int64_t b, int64_t vocab_size) {
  bool outside = false;
  for (int64_t i = 0; i < length; ++i)
    outside |= static_cast<uint64_t>(static_cast<int64_t>(row[i * stride])) >= static_cast<uint64_t>(vocab_size);
  if (!outside) return;
  for (int64_t i = 0; i < length; ++i) {
    const int64_t id = row[i * stride];
    if (id < 0 || id >= vocab_size)
      fail("input_ids: id ", id, " at position (", b, ", ", i, ") is outside the vocabulary [0, ", vocab_size, ")");
  }
}

template <typename T>
void span_corruption_typed(const SpanCorruptionArgs& a) {
  const uint64_t seed = static_cast<uint64_t>(*a.seed);
  const int64_t length = a.length;
  bool draw_denoiser = a.num_denoisers > 1;
  // The table comes from fastmask/t5.py, which checked the arguments; a table that would write out
  // of bounds is refused here anyway.
  if (a.num_denoisers < 1) fail("denoisers: expected at least one");
  for (int64_t i = 0; i < a.num_denoisers; ++i) {
    const int64_t* d = a.table + i * kTableColumns;
    const int64_t lo = d[1] - d[3], hi = d[1] + d[3], spans = d[2], z = d[4] != 0;
    if (d[3] < 0 || lo < 1 || spans < 1 || spans > lo || length - hi < spans || (z && spans > a.num_sentinels) ||
        length - lo + z * spans + 1 > a.input_length || hi + z * spans + 1 > a.target_length)
      fail("denoisers: denoiser ", i, " does not fit rows of ", length, " tokens");
    draw_denoiser |= d[3] > 0;
  }
  if (a.vocab_size > 0) {  // fastmask/t5.py checked the scalars on the host; refused here anyway
    check_token("eos_token_id", a.eos, a.vocab_size);
    check_token("pad_token_id", a.pad, a.vocab_size);
    for (int64_t i = 0; i < a.num_sentinels; ++i) check_token("sentinel_ids", a.sentinels[i], a.vocab_size);
  }

  const bool avx2 = philox_block_avx2();
  parallel_for(a.batch, a.threads, [&](int64_t b) {
    static thread_local Scratch tls;
    Scratch& s = tls;  // one TLS lookup per row
    const uint64_t key = row_key(a.keys, b);
    const T* row = a.ids.as<T>() + b * a.ids.stride[0];
    if (a.vocab_size > 0) check_row_ids(row, a.ids.stride[1], length, b, a.vocab_size);
    T* in = static_cast<T*>(a.inputs) + b * a.input_length;
    T* tg = static_cast<T*>(a.targets) + b * a.target_length;

    // 1. The denoiser: the first i with w0 < threshold_i; the noise count n - d + ((w1 * (2d + 1)) >> 32).
    int64_t choice = 0;
    uint32_t split_word = 0;
    if (draw_denoiser) {
      const Words4 u = stream_words(seed, key, 0, kPurposeUl2Denoiser);
      while (choice < a.num_denoisers - 1 && static_cast<int64_t>(u.w[0]) >= a.table[choice * kTableColumns]) ++choice;
      split_word = u.w[1];
    }
    const int64_t* d = a.table + choice * kTableColumns;
    const int64_t half = d[3];
    const int64_t noise = d[1] - half + static_cast<int64_t>((static_cast<uint64_t>(split_word) *
                                                              static_cast<uint64_t>(2 * half + 1)) >> 32);
    const int64_t plain = length - noise;
    const int64_t spans = d[2];
    const bool sentinels = d[4] != 0;

    // 2. Candidate keys of the gaps: noise gaps [0, noise - 1), non-noise gaps [0, plain - 1).
    const int64_t gaps_noise = noise - 1, gaps_plain = plain - 1;
    const int64_t gaps = std::max(gaps_noise, gaps_plain);
    const int64_t* cuts_noise = nullptr;
    const int64_t* cuts_plain = nullptr;
    if (spans > 1) {
      const int64_t k = spans - 1;
      s.cand_noise.resize(static_cast<size_t>(gaps_noise + 4));
      s.cand_plain.resize(static_cast<size_t>(gaps_plain + 4));
      s.cuts_noise.resize(static_cast<size_t>(k + 1));
      s.cuts_plain.resize(static_cast<size_t>(k + 1));
      uint64_t threshold_noise = candidate_threshold(gaps_noise, k);
      uint64_t threshold_plain = candidate_threshold(gaps_plain, k);
      int64_t c_noise = 0, c_plain = 0;
      for (int attempt = 0; attempt < 2; ++attempt) {  // the second with every gap a candidate
        c_noise = c_plain = 0;
        PhiloxBlockWords w;
        for (int64_t start = 0; start < gaps; start += kGapsPerBlock) {
          // Gaps start + l: noise word w[l % 2][l / 2], non-noise word w[2 + l % 2][l / 2].
          philox_block(seed, key, kPurposeT5Spans, static_cast<uint32_t>(start / 2), w);
          const int end_noise = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kGapsPerBlock, gaps_noise - start)));
          const int end_plain = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kGapsPerBlock, gaps_plain - start)));
          c_noise = append_candidates(avx2, w[0], w[1], start, end_noise, threshold_noise, s.cand_noise.data(), c_noise);
          c_plain = append_candidates(avx2, w[2], w[3], start, end_plain, threshold_plain, s.cand_plain.data(), c_plain);
        }
        if (c_noise >= k && c_plain >= k) break;
        threshold_noise = threshold_plain = uint64_t{1} << 32;
      }
      // 3. The K - 1 smallest keys of each kind, 4. as cut gaps in order.
      smallest_in_order(s.cand_noise.data(), c_noise, k, threshold_noise, s.cuts_noise.data(), s.histogram, s.work);
      smallest_in_order(s.cand_plain.data(), c_plain, k, threshold_plain, s.cuts_plain.data(), s.histogram, s.work);
      cuts_noise = s.cuts_noise.data();
      cuts_plain = s.cuts_plain.data();
    }

    // The row as m_0, n_0, m_1, n_1, ...: inputs get m_i then sentinel_i, targets sentinel_i then n_i.
    const RowEnds ends = (avx2 ? write_segments_avx2<T> : write_segments_default<T>)(
        row, a.ids.stride[1], length, in, a.input_length, tg, a.target_length, spans, plain, noise, cuts_plain,
        cuts_noise, sentinels ? a.sentinels : nullptr);
    int64_t ip = ends.inputs, tp = ends.targets;
    in[ip++] = static_cast<T>(a.eos);
    tg[tp++] = static_cast<T>(a.eos);
    a.input_lengths[b] = ip;
    a.target_lengths[b] = tp;
    a.denoiser[b] = choice;
    std::fill(in + ip, in + a.input_length, static_cast<T>(a.pad));
    std::fill(tg + tp, tg + a.target_length, static_cast<T>(a.pad));
  });
}

}  // namespace

void span_corruption(const SpanCorruptionArgs& args) {
  switch (args.ids.dtype) {
    case kInt32: return span_corruption_typed<int32_t>(args);
    case kInt64: return span_corruption_typed<int64_t>(args);
    default: fail("input_ids: unsupported dtype code ", args.ids.dtype);
  }
}

// --- binding (fastmask/cpp/t5.py) --------------------------------------------------------------

namespace {

void span_corruption_entry(TensorView ids, TensorView seed, OptionalView keys, TensorView table, TensorView sentinels,
                           int64_t eos, int64_t pad, TensorView inputs, TensorView targets, TensorView input_lengths,
                           TensorView target_lengths, TensorView denoiser, int threads, int64_t vocab_size) {
  SpanCorruptionArgs a;
  std::tie(a.batch, a.length) = matrix_shape(ids, "input_ids");
  a.ids = ids;
  a.seed = int64_data(seed, "seed");
  a.keys = keys;
  if (table.ndim != 2 || table.size[1] != kTableColumns) fail("table: expected [denoisers, ", kTableColumns, "]");
  a.table = int64_data(table, "table");
  a.num_denoisers = table.size[0];
  a.sentinels = int64_data(sentinels, "sentinels");
  a.num_sentinels = sentinels.numel();
  a.eos = eos;
  a.pad = pad;
  a.input_length = inputs.size[1];
  a.target_length = targets.size[1];
  a.inputs = output<void>(inputs, "inputs", {a.batch, a.input_length});
  a.targets = output<void>(targets, "targets", {a.batch, a.target_length});
  a.input_lengths = output<int64_t>(input_lengths, "input_lengths", {a.batch});
  a.target_lengths = output<int64_t>(target_lengths, "target_lengths", {a.batch});
  a.denoiser = output<int64_t>(denoiser, "denoiser", {a.batch});
  a.threads = threads;
  a.vocab_size = vocab_size;
  span_corruption(a);
}

}  // namespace

void bind_t5(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "span_corruption", &span_corruption_entry, py::arg("ids"), py::arg("seed"), py::arg("keys"),
             py::arg("table"), py::arg("sentinels"), py::arg("eos"), py::arg("pad"), py::arg("inputs"),
             py::arg("targets"), py::arg("input_lengths"), py::arg("target_lengths"), py::arg("denoiser"),
             py::arg("threads"), py::arg("vocab_size"));
}
}  // namespace fastmask
