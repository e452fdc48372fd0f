// T5 span corruption with sentinels and UL2 mixtures (docs/t5.md), bit-identical to
// fastmask/reference/t5.py. One task per row:
//   1. the row's denoiser and noise count (purpose UL2_DENOISER, position 0; skipped for one fixed
//      denoiser, whose draw cannot change anything);
//   2. the words of the gaps, 32 at a time (purpose T5_SPANS: w0 noise gaps, w1 non-noise gaps),
//      packed as (word << 31) | gap;
//   3. the (K-1)-th smallest packed key of each kind: a 256-bucket histogram of the top 8 bits of
//      the words finds its bucket, nth_element that bucket (a handful of keys);
//   4. one ordered pass lists the cut gaps, then the row is copied segment by segment.
#include "t5.h"

#include <algorithm>
#include <vector>

#include "common.h"
#include "philox.h"
#include "philox_block.h"

namespace fastmask {
namespace {

constexpr uint32_t kPurposeT5Spans = 4;      // fastmask._rng.Purpose.T5_SPANS
constexpr uint32_t kPurposeUl2Denoiser = 5;  // fastmask._rng.Purpose.UL2_DENOISER
constexpr int kPackShift = 31;
constexpr int kTableColumns = 5;

struct Scratch {
  std::vector<uint64_t> keys_noise, keys_plain;  // packed keys in gap order
  std::vector<uint64_t> bucket;
  std::vector<int64_t> cuts_noise, cuts_plain;   // cut gaps, ascending
};

// The bound of the k smallest of n distinct packed keys: the k-th smallest + 1 (0 when k = 0), so
// key < bound selects exactly them. histogram[b] counts the keys whose word has top byte b.
uint64_t smallest_bound(const std::vector<uint64_t>& keys, int64_t n, int64_t k, const int32_t* histogram,
                        std::vector<uint64_t>& bucket) {
  if (k <= 0) return 0;
  constexpr int kShift = kPackShift + 24;
  int64_t below = 0;
  int b = 0;
  while (below + histogram[b] < k) below += histogram[b++];
  bucket.clear();
  for (int64_t m = 0; m < n; ++m)
    if (static_cast<int>(keys[m] >> kShift) == b) bucket.push_back(keys[m]);
  const int64_t rank = k - below - 1;
  std::nth_element(bucket.begin(), bucket.begin() + rank, bucket.end());
  return bucket[static_cast<size_t>(rank)] + 1;
}

// The gaps whose key is below the bound, ascending, branch-free; returns their number.
int64_t list_cuts(const uint64_t* keys, int64_t n, uint64_t bound, int64_t* cuts) {
  int64_t count = 0;
  for (int64_t g = 0; g < n; ++g) {
    cuts[count] = g;
    count += keys[g] < bound;
  }
  return count;
}

template <typename T>
inline void copy_run(T* out, const T* row, int64_t from, int64_t n, int64_t stride) {
  if (stride == 1) {
    std::copy(row + from, row + from + n, out);
  } else {
    for (int64_t m = 0; m < n; ++m) out[m] = row[(from + m) * stride];
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

  parallel_for(a.batch, a.threads, [&](int64_t b) {
    static thread_local Scratch tls;
    Scratch& s = tls;  // one TLS lookup per row
    const uint64_t key = static_cast<uint64_t>(a.keys == nullptr ? b : load_int(a.keys, a.keys_dtype, b, a.keys_stride));
    const T* row = static_cast<const T*>(a.ids) + b * a.ids_stride0;
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

    // 2. Packed keys of the gaps: noise gaps [0, noise - 1) by w0, non-noise gaps [0, plain - 1) by w1.
    const int64_t gaps_noise = noise - 1, gaps_plain = plain - 1;
    const int64_t gaps = std::max(gaps_noise, gaps_plain);
    const int64_t* cuts_noise = nullptr;
    const int64_t* cuts_plain = nullptr;
    if (spans > 1) {
      s.keys_noise.resize(static_cast<size_t>(gaps_noise));
      s.keys_plain.resize(static_cast<size_t>(gaps_plain));
      s.cuts_noise.resize(static_cast<size_t>(gaps_noise + 1));
      s.cuts_plain.resize(static_cast<size_t>(gaps_plain + 1));
      uint64_t* keys_noise = s.keys_noise.data();
      uint64_t* keys_plain = s.keys_plain.data();
      int32_t hist_noise[256] = {}, hist_plain[256] = {};
      PhiloxBlockWords w;
      for (int64_t start = 0; start < gaps; start += kPhiloxBlock) {
        philox_block(seed, key, kPurposeT5Spans, static_cast<uint32_t>(start), w);
        const int end_noise = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kPhiloxBlock, gaps_noise - start)));
        for (int l = 0; l < end_noise; ++l) {
          keys_noise[start + l] = (static_cast<uint64_t>(w[0][l]) << kPackShift) | static_cast<uint64_t>(start + l);
          ++hist_noise[w[0][l] >> 24];
        }
        const int end_plain = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kPhiloxBlock, gaps_plain - start)));
        for (int l = 0; l < end_plain; ++l) {
          keys_plain[start + l] = (static_cast<uint64_t>(w[1][l]) << kPackShift) | static_cast<uint64_t>(start + l);
          ++hist_plain[w[1][l] >> 24];
        }
      }
      // 3. The K - 1 smallest keys of each kind; 4. the cut gaps in order.
      list_cuts(keys_noise, gaps_noise, smallest_bound(s.keys_noise, gaps_noise, spans - 1, hist_noise, s.bucket),
                s.cuts_noise.data());
      list_cuts(keys_plain, gaps_plain, smallest_bound(s.keys_plain, gaps_plain, spans - 1, hist_plain, s.bucket),
                s.cuts_plain.data());
      cuts_noise = s.cuts_noise.data();
      cuts_plain = s.cuts_plain.data();
    }

    // The row as m_0, n_0, m_1, n_1, ...: inputs get m_i then sentinel_i, targets sentinel_i then n_i.
    const int64_t stride = a.ids_stride1;
    int64_t x = 0, ip = 0, tp = 0, end_plain = 0, end_noise = 0;
    for (int64_t i = 0; i < spans; ++i) {
      const int64_t next_plain = i < spans - 1 ? cuts_plain[i] + 1 : plain;
      copy_run(in + ip, row, x, next_plain - end_plain, stride);
      ip += next_plain - end_plain;
      x += next_plain - end_plain;
      end_plain = next_plain;
      if (sentinels) {
        const T sentinel = static_cast<T>(a.sentinels[i]);
        in[ip++] = sentinel;
        tg[tp++] = sentinel;
      }
      const int64_t next_noise = i < spans - 1 ? cuts_noise[i] + 1 : noise;
      copy_run(tg + tp, row, x, next_noise - end_noise, stride);
      tp += next_noise - end_noise;
      x += next_noise - end_noise;
      end_noise = next_noise;
    }
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
  switch (args.ids_dtype) {
    case kInt32: return span_corruption_typed<int32_t>(args);
    case kInt64: return span_corruption_typed<int64_t>(args);
    default: fail("input_ids: unsupported dtype code ", args.ids_dtype);
  }
}

}  // namespace fastmask
