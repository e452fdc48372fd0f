// random_words: the raw stream, four uint32 words per (row, position), written as int64.
#include "random_words.h"

#include <pybind11/stl.h>

#include <vector>

#include "binding.h"
#include "common.h"
#include "philox.h"
#include "philox_block.h"

namespace fastmask {

void random_words(const int64_t* seed, const void* keys, int keys_dtype, int64_t keys_stride, int64_t rows,
                  int64_t length, uint32_t purpose, int64_t* out, int threads) {
  const uint64_t s = static_cast<uint64_t>(*seed);
  const int64_t full = length - length % kPhiloxBlock;
  parallel_for(rows, threads, [&](int64_t r) {
    const uint64_t key = static_cast<uint64_t>(load_int(keys, keys_dtype, r, keys_stride));
    int64_t* row_out = out + r * length * 4;
    PhiloxBlockWords words;
    for (int64_t start = 0; start < full; start += kPhiloxBlock) {
      philox_block(s, key, purpose, static_cast<uint32_t>(start), words);
      for (int i = 0; i < kPhiloxBlock; ++i)
        for (int j = 0; j < 4; ++j) row_out[4 * (start + i) + j] = words[j][i];
    }
    for (int64_t p = full; p < length; ++p) {
      const Words4 w = stream_words(s, key, static_cast<uint32_t>(p), purpose);
      for (int j = 0; j < 4; ++j) row_out[4 * p + j] = w.w[j];
    }
  });
}

// --- binding (fastmask/cpp/rng.py) -------------------------------------------------------------

namespace {

void random_words_entry(TensorView seed, TensorView keys, uint32_t purpose, TensorView out, int threads) {
  if (keys.ndim != 1 || out.ndim != 3) fail("random_words: expected keys [rows] and out [rows, length, 4]");
  const int64_t rows = keys.size[0], length = out.size[1];
  random_words(int64_data(seed, "seed"), keys.data, keys.dtype, keys.stride[0], rows, length, purpose,
               output<int64_t>(out, "out", {rows, length, 4}), threads);
}

}  // namespace

void bind_rng(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "random_words", &random_words_entry, py::arg("seed"), py::arg("keys"), py::arg("purpose"),
             py::arg("out"), py::arg("threads"));
  // Test hook: the block Philox with a chosen implementation, words[j][i] flattened.
  m.def(
      "philox_block",
      [](bool fastest, uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first) {
        PhiloxBlockWords words;
        philox_block_with(fastest, seed, key, purpose, first, words);
        return std::vector<uint32_t>(&words[0][0], &words[0][0] + 4 * kPhiloxBlock);
      },
      py::arg("fastest"), py::arg("seed"), py::arg("key"), py::arg("purpose"), py::arg("first"));
}
}  // namespace fastmask
