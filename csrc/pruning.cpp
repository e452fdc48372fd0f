// Magnitude pruning masks (docs/pruning.md). A group prunes its k smallest (key, position) pairs,
// key = |score|'s float bits, position = the element's place in the concatenated group. Found in
// two passes without a sort: a histogram of the top 16 key bits gives the bin b holding the k-th
// key; the second pass writes every mask element outside b and collects b's elements, of which
// nth_element picks the r still to prune.
#include "pruning.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "binding.h"
#include "common.h"

namespace fastmask {
namespace {

constexpr int64_t kChunk = int64_t{1} << 20;  // elements per task

struct Chunk {
  int tensor;
  int64_t begin, end;  // within the tensor
  int64_t offset;      // of the tensor's first element in the group
};

// Keys of the dtypes: unsigned bits with the sign cleared; top 16 bits (15 for half types) as the bin.
template <typename Bits, int KeyBits>
struct KeyOf {
  using bits_type = Bits;
  static constexpr int kShift = KeyBits > 16 ? KeyBits - 16 : 0;
  static constexpr int64_t kBins = int64_t{1} << (KeyBits - kShift);
  static uint64_t key(const Bits* data, int64_t i) {
    return static_cast<uint64_t>(data[i]) & ((uint64_t{1} << KeyBits) - 1);
  }
};

template <typename K>
void select_group(const std::vector<const typename K::bits_type*>& data, const std::vector<uint8_t*>& masks,
                  const std::vector<int64_t>& numels, int64_t k, int threads) {
  int64_t total = 0;
  std::vector<Chunk> chunks;
  for (size_t t = 0; t < data.size(); ++t) {
    for (int64_t b = 0; b < numels[t]; b += kChunk)
      chunks.push_back({static_cast<int>(t), b, std::min(numels[t], b + kChunk), total});
    total += numels[t];
  }
  if (k <= 0 || k >= total) {  // keep all or prune all: no selection
    for (size_t t = 0; t < data.size(); ++t) std::memset(masks[t], k <= 0 ? 1 : 0, numels[t]);
    return;
  }
  const int64_t n_chunks = static_cast<int64_t>(chunks.size());
  const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n_chunks)));

  // Pass 1: histogram of the bins, one private histogram per worker.
  std::vector<std::vector<int64_t>> hists(workers, std::vector<int64_t>(K::kBins, 0));
  parallel_for(workers, workers, [&](int64_t w) {
    int64_t* hist = hists[w].data();
    for (int64_t c = w; c < n_chunks; c += workers) {
      const Chunk& ch = chunks[c];
      const auto* d = data[ch.tensor];
      for (int64_t i = ch.begin; i < ch.end; ++i) ++hist[K::key(d, i) >> K::kShift];
    }
  });
  int64_t below = 0;
  uint64_t bin = 0;
  for (;; ++bin) {
    int64_t in_bin = 0;
    for (int w = 0; w < workers; ++w) in_bin += hists[w][bin];
    if (below + in_bin >= k) break;
    below += in_bin;
  }
  const int64_t r = k - below;  // in [1, count of bin]

  // Pass 2: masks outside the bin; the bin's (key, position) pairs collected per chunk, in order.
  std::vector<std::vector<std::pair<uint64_t, int64_t>>> found(n_chunks);
  parallel_for(n_chunks, threads, [&](int64_t c) {
    const Chunk& ch = chunks[c];
    const auto* d = data[ch.tensor];
    uint8_t* out = masks[ch.tensor];
    auto& list = found[c];
    for (int64_t i = ch.begin; i < ch.end; ++i) {
      const uint64_t key = K::key(d, i);
      const uint64_t b = key >> K::kShift;
      out[i] = b >= bin;
      if (b == bin) list.emplace_back(key, ch.offset + i);
    }
  });
  std::vector<std::pair<uint64_t, int64_t>> bin_items;
  for (auto& list : found) bin_items.insert(bin_items.end(), list.begin(), list.end());
  std::nth_element(bin_items.begin(), bin_items.begin() + (r - 1), bin_items.end());
  std::vector<int64_t> starts(data.size());
  for (size_t t = 0, s = 0; t < data.size(); s += numels[t], ++t) starts[t] = static_cast<int64_t>(s);
  for (int64_t j = 0; j < r; ++j) {
    const int64_t pos = bin_items[j].second;
    const size_t t = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), pos) - starts.begin()) - 1;
    masks[t][pos - starts[t]] = 0;
  }
}

template <typename K>
void select_all(const std::vector<std::uintptr_t>& scores, const std::vector<int64_t>& numels,
                const std::vector<int64_t>& counts, const std::vector<std::uintptr_t>& masks, int threads) {
  using Bits = typename K::bits_type;
  std::vector<const Bits*> data;
  std::vector<uint8_t*> outs;
  for (size_t t = 0; t < scores.size(); ++t) {
    data.push_back(reinterpret_cast<const Bits*>(scores[t]));
    outs.push_back(reinterpret_cast<uint8_t*>(masks[t]));
  }
  if (counts.size() == 1) {
    select_group<K>(data, outs, numels, counts[0], threads);
    return;
  }
  for (size_t t = 0; t < scores.size(); ++t) select_group<K>({data[t]}, {outs[t]}, {numels[t]}, counts[t], threads);
}

template <typename K>
void nm_groups(std::uintptr_t scores, int64_t numel, int64_t n, int64_t m, std::uintptr_t mask, int threads) {
  const auto* d = reinterpret_cast<const typename K::bits_type*>(scores);
  uint8_t* out = reinterpret_cast<uint8_t*>(mask);
  const int64_t groups = numel / m, prune = m - n;
  const int64_t per_task = std::max<int64_t>(1, kChunk / m);
  parallel_for((groups + per_task - 1) / per_task, threads, [&](int64_t task) {
    uint64_t keys[64];
    const int64_t g1 = std::min(groups, (task + 1) * per_task);
    for (int64_t g = task * per_task; g < g1; ++g) {
      const int64_t base = g * m;
      for (int64_t i = 0; i < m; ++i) keys[i] = K::key(d, base + i);
      for (int64_t i = 0; i < m; ++i) {  // rank in (key, index) order; the prune smallest are pruned
        int64_t rank = 0;
        for (int64_t j = 0; j < m; ++j) rank += keys[j] < keys[i] || (keys[j] == keys[i] && j < i);
        out[base + i] = rank >= prune;
      }
    }
  });
}

template <template <typename> class Run, typename... Args>
void by_dtype(int dtype, Args&&... args) {
  switch (dtype) {
    case kFloat16:
    case kBFloat16: Run<KeyOf<uint16_t, 15>>::run(std::forward<Args>(args)...); break;
    case kFloat32: Run<KeyOf<uint32_t, 31>>::run(std::forward<Args>(args)...); break;
    case kFloat64: Run<KeyOf<uint64_t, 63>>::run(std::forward<Args>(args)...); break;
    default: fail("scores: expected a floating dtype code, got ", dtype);
  }
}

template <typename K>
struct SelectAll {
  template <typename... A>
  static void run(A&&... a) { select_all<K>(std::forward<A>(a)...); }
};

template <typename K>
struct NmGroups {
  template <typename... A>
  static void run(A&&... a) { nm_groups<K>(std::forward<A>(a)...); }
};

template <typename F>
std::string message_of(F&& body) noexcept {
  try {
    body();
    return {};
  } catch (const std::exception& error) {
    return error.what();
  } catch (...) {
    return "fastmask: unknown C++ error";
  }
}

}  // namespace

std::string magnitude_masks(const std::vector<std::uintptr_t>& scores, const std::vector<int64_t>& numels, int dtype,
                            const std::vector<int64_t>& counts, const std::vector<std::uintptr_t>& masks, int threads) {
  return message_of([&] {
    if (scores.size() != numels.size() || scores.size() != masks.size())
      fail("magnitude_masks: scores, numels and masks differ in length");
    if (counts.size() != 1 && counts.size() != scores.size())
      fail("magnitude_masks: expected one count or one per tensor, got ", counts.size());
    by_dtype<SelectAll>(dtype, scores, numels, counts, masks, threads);
  });
}

std::string nm_mask(std::uintptr_t scores, int64_t numel, int dtype, int64_t n, int64_t m, std::uintptr_t mask,
                    int threads) {
  return message_of([&] {
    if (m < 1 || m > 64 || n < 0 || n > m || numel % m != 0)
      fail("pattern: expected N:M with 0 <= N <= M <= 64 and the last dimension a multiple of M");
    by_dtype<NmGroups>(dtype, scores, numel, n, m, mask, threads);
  });
}

namespace {

// Views in (scores flattened to 1-D by the launcher: a weight may have more dimensions than a view).
std::vector<std::uintptr_t> addresses(const std::vector<TensorView>& views, const char* name) {
  std::vector<std::uintptr_t> out;
  for (const TensorView& v : views) {
    check_arg(v, name);
    if (v.ndim != 1 || (v.size[0] > 1 && v.stride[0] != 1)) fail(name, ": expected contiguous 1-D views");
    out.push_back(reinterpret_cast<std::uintptr_t>(v.data));
  }
  return out;
}

void rethrow(const std::string& message) {
  if (!message.empty()) fail(message);
}

void magnitude_masks_entry(std::vector<TensorView> scores, std::vector<int64_t> counts, std::vector<TensorView> masks,
                           int threads) {
  std::vector<int64_t> numels;
  for (const TensorView& v : scores) numels.push_back(v.numel());
  for (size_t t = 0; t < scores.size() && t < masks.size(); ++t)
    if (masks[t].numel() != numels[t] || masks[t].dtype != kBool) fail("masks: expected bool of the scores' sizes");
  rethrow(magnitude_masks(addresses(scores, "scores"), numels, scores.empty() ? kFloat32 : scores[0].dtype, counts,
                          addresses(masks, "masks"), threads));
}

void nm_mask_entry(TensorView scores, int64_t n, int64_t m, TensorView mask, int threads) {
  const int64_t numel = scores.numel();
  rethrow(nm_mask(addresses({scores}, "scores")[0], numel, scores.dtype, n, m,
                  reinterpret_cast<std::uintptr_t>(output<uint8_t>(mask, "mask", {numel})), threads));
}

}  // namespace

void bind_pruning(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "magnitude_masks", &magnitude_masks_entry, py::arg("scores"), py::arg("counts"), py::arg("masks"),
             py::arg("threads"));
  def_kernel(m, "nm_mask", &nm_mask_entry, py::arg("scores"), py::arg("n"), py::arg("m"), py::arg("mask"),
             py::arg("threads"));
}

}  // namespace fastmask
