// pybind11 bindings of fastmask._C. Every function takes raw pointers (tensor.data_ptr()) as
// integers, plus sizes, strides and dtype codes checked on the Python side (fastmask/_cpp.py),
// and releases the GIL while it works.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "philox_batch.h"
#include "random_words.h"

namespace py = pybind11;

template <typename T>
static T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastmask C++ CPU kernels";
  m.attr("STREAM_VERSION") = 1;

  m.def(
      "random_words",
      [](std::uintptr_t seed, std::uintptr_t keys, int keys_dtype, int64_t keys_stride, int64_t rows, int64_t length,
         uint32_t purpose, std::uintptr_t out, int threads) {
        fastmask::random_words(ptr<const int64_t>(seed), ptr<const void>(keys), keys_dtype, keys_stride, rows, length,
                               purpose, ptr<int64_t>(out), threads);
      },
      py::arg("seed"), py::arg("keys"), py::arg("keys_dtype"), py::arg("keys_stride"), py::arg("rows"),
      py::arg("length"), py::arg("purpose"), py::arg("out"), py::arg("threads"),
      py::call_guard<py::gil_scoped_release>());

  // Test hooks: the batched Philox with a chosen implementation, words[j][i] flattened.
  m.def("philox_batch_isa", &fastmask::philox_batch_isa);
  m.def(
      "philox_batch",
      [](bool fastest, uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first) {
        uint32_t words[4][fastmask::kPhiloxBatch];
        fastmask::philox_batch_with(fastest, seed, key, purpose, first, words);
        return std::vector<uint32_t>(&words[0][0], &words[0][0] + 4 * fastmask::kPhiloxBatch);
      },
      py::arg("fastest"), py::arg("seed"), py::arg("key"), py::arg("purpose"), py::arg("first"));
}
