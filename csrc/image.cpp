// Image and patch masking (docs/image.md), bit-identical to fastmask/reference/image.py. One task per row.
//   block_mask: BEiT's blocks, one Philox call per attempt (purpose BLOCK_MASK, position = attempt),
//     the shape by an upper bound in the table row of M, the block's cells counted and set in the
//     output bytes; exact: the smallest packed keys (purpose BLOCK_TOP_UP) of the unmasked cells.
//   patch_shuffle: the packed keys (purpose PATCH_SHUFFLE) in order by a counting sort on the top bits
//     of the words and an insertion sort that finishes each bucket; ranks give ids_restore.
#include "image.h"

#include "binding.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common.h"
#include "philox.h"
#include "philox_block.h"

namespace fastmask {
namespace {

constexpr int kPackShift = 31;

// Packed keys (w0 << 31) | p of positions [0, n) for one purpose, into keys[0..n).
void packed_keys(uint64_t seed, uint64_t key, uint32_t purpose, int64_t n, uint64_t* keys) {
  PhiloxBlockWords w;
  for (int64_t start = 0; start < n; start += kPhiloxBlock) {
    philox_block(seed, key, purpose, static_cast<uint32_t>(start), w);
    const int end = static_cast<int>(std::min<int64_t>(kPhiloxBlock, n - start));
    for (int l = 0; l < end; ++l)
      keys[start + l] = (static_cast<uint64_t>(w[0][l]) << kPackShift) | static_cast<uint64_t>(start + l);
  }
}

struct Scratch {
  std::vector<uint64_t> keys, sorted;
  std::vector<int32_t> hist;
};

}  // namespace

void block_mask(const BlockMaskArgs& a) {
  const int64_t height = a.height, width = a.width, cells = height * width;
  if (a.most < 1 || a.num_shapes < 1) fail("block_mask: empty shape table");
  for (int64_t s = 0; s < a.num_shapes; ++s) {
    const int64_t h = a.shapes[2 * s], w = a.shapes[2 * s + 1];
    if (h < 0 || w < 0 || h > height || w > width) fail("block_mask: shape ", h, "x", w, " outside the ", height, "x", width, " grid");
  }
  const uint64_t seed = static_cast<uint64_t>(*a.seed);
  parallel_for(a.batch, a.threads, [&](int64_t b) {
    static thread_local Scratch tls;
    Scratch& scratch = tls;
    const uint64_t key = row_key(a.keys, b);
    uint8_t* grid = a.out + b * cells;
    std::memset(grid, 0, static_cast<size_t>(cells));
    int64_t count = 0, fails = 0;
    uint32_t t = 0;
    while (count < a.target && fails < a.max_attempts) {
      const int64_t limit = std::min(a.target - count, a.most);  // M
      const Words4 u = stream_words(seed, key, t++, kPurposeBlockMask);
      const int64_t* row = a.cum + (limit - 1) * a.num_shapes;
      int64_t s = std::upper_bound(row, row + a.num_shapes, static_cast<int64_t>(u.w[0])) - row;
      s = std::min(s, a.num_shapes - 1);
      const int64_t h = a.shapes[2 * s], w = a.shapes[2 * s + 1];
      const int64_t top = lemire(u.w[1], height - h + 1), left = lemire(u.w[2], width - w + 1);
      int64_t added = 0;
      for (int64_t i = top; i < top + h; ++i) {
        const uint8_t* line = grid + i * width + left;
        for (int64_t j = 0; j < w; ++j) added += line[j] == 0;
      }
      if (added > 0 && added <= limit) {
        for (int64_t i = top; i < top + h; ++i) std::memset(grid + i * width + left, 1, static_cast<size_t>(w));
        count += added;
        fails = 0;
      } else {
        ++fails;
      }
    }
    const int64_t need = a.exact ? a.target - count : 0;
    if (need > 0) {
      scratch.keys.resize(static_cast<size_t>(cells));
      packed_keys(seed, key, kPurposeBlockTopUp, cells, scratch.keys.data());
      scratch.sorted.clear();
      for (int64_t p = 0; p < cells; ++p)
        if (!grid[p]) scratch.sorted.push_back(scratch.keys[p]);
      std::nth_element(scratch.sorted.begin(), scratch.sorted.begin() + (need - 1), scratch.sorted.end());
      const uint64_t kth = scratch.sorted[static_cast<size_t>(need - 1)];
      for (int64_t p = 0; p < cells; ++p) grid[p] |= static_cast<uint8_t>(!grid[p] && scratch.keys[p] <= kth);
    }
  });
}

void patch_shuffle(const PatchShuffleArgs& a) {
  const int64_t length = a.length, keep = a.keep;
  if (keep < 0 || keep > length) fail("patch_shuffle: keep ", keep, " outside [0, ", length, "]");
  int bits = 1;
  while (bits < 16 && (int64_t{1} << bits) < length) ++bits;
  const uint64_t seed = static_cast<uint64_t>(*a.seed);
  parallel_for(a.batch, a.threads, [&](int64_t b) {
    static thread_local Scratch tls;
    Scratch& s = tls;
    const uint64_t key = row_key(a.keys, b);
    s.keys.resize(static_cast<size_t>(length));
    s.sorted.resize(static_cast<size_t>(length));
    s.hist.assign(static_cast<size_t>(1) << bits, 0);
    packed_keys(seed, key, kPurposePatchShuffle, length, s.keys.data());
    const int shift = kPackShift + 32 - bits;
    for (int64_t p = 0; p < length; ++p) ++s.hist[s.keys[p] >> shift];
    int32_t running = 0;
    for (auto& h : s.hist) {
      const int32_t n = h;
      h = running;
      running += n;
    }
    for (int64_t p = 0; p < length; ++p) s.sorted[s.hist[s.keys[p] >> shift]++] = s.keys[p];
    uint64_t* sorted = s.sorted.data();
    for (int64_t i = 1; i < length; ++i) {  // buckets are in order: only moves inside a bucket
      const uint64_t v = sorted[i];
      int64_t j = i;
      while (j > 0 && sorted[j - 1] > v) {
        sorted[j] = sorted[j - 1];
        --j;
      }
      sorted[j] = v;
    }
    constexpr uint64_t kPositionMask = (uint64_t{1} << kPackShift) - 1;
    int64_t* keep_row = a.ids_keep + b * keep;
    int64_t* restore_row = a.ids_restore + b * length;
    uint8_t* mask_row = a.mask + b * length;
    for (int64_t r = 0; r < length; ++r) {
      const int64_t p = static_cast<int64_t>(sorted[r] & kPositionMask);
      if (r < keep) keep_row[r] = p;
      restore_row[p] = r;
      mask_row[p] = r >= keep;
    }
  });
}

// --- binding (fastmask/cpp/image.py) -----------------------------------------------------------

namespace {

void block_mask_entry(TensorView seed, OptionalView keys, TensorView cum, TensorView shapes, int64_t target,
                      int64_t max_attempts, bool exact, TensorView out, int threads) {
  if (out.ndim != 3) fail("out: expected [batch, height, width]");
  if (cum.ndim != 2 || shapes.ndim != 2 || shapes.size[1] != 2 || cum.size[1] != shapes.size[0])
    fail("block_mask: expected cum [most, shapes] and shapes [shapes, 2]");
  const int64_t batch = out.size[0], height = out.size[1], width = out.size[2];
  BlockMaskArgs a{int64_data(seed, "seed"), keys, int64_data(cum, "cum"), int64_data(shapes, "shapes"), cum.size[0],
                  shapes.size[0], batch, height, width, target, max_attempts, exact,
                  output<uint8_t>(out, "out", {batch, height, width}), threads};
  block_mask(a);
}

void patch_shuffle_entry(TensorView seed, OptionalView keys, TensorView mask, TensorView ids_keep,
                         TensorView ids_restore, int threads) {
  if (mask.ndim != 2 || ids_keep.ndim != 2) fail("patch_shuffle: expected 2-D outputs");
  const int64_t batch = mask.size[0], length = mask.size[1], keep = ids_keep.size[1];
  PatchShuffleArgs a{int64_data(seed, "seed"), keys, batch, length, keep, output<uint8_t>(mask, "mask", {batch, length}),
                     output<int64_t>(ids_keep, "ids_keep", {batch, keep}),
                     output<int64_t>(ids_restore, "ids_restore", {batch, length}), threads};
  patch_shuffle(a);
}

}  // namespace

void bind_image(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "block_mask", &block_mask_entry, py::arg("seed"), py::arg("keys"), py::arg("cum"), py::arg("shapes"),
             py::arg("target"), py::arg("max_attempts"), py::arg("exact"), py::arg("out"), py::arg("threads"));
  def_kernel(m, "patch_shuffle", &patch_shuffle_entry, py::arg("seed"), py::arg("keys"), py::arg("mask"),
             py::arg("ids_keep"), py::arg("ids_restore"), py::arg("threads"));
}
}  // namespace fastmask
