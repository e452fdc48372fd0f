// fastmask._C: the constants and the binding table. Each family binds its own kernels in a
// bind_<family>(py::module_&) at the end of csrc/<family>.cpp (binding.h: tensors as TensorViews,
// named arguments, one wrapper for checks, GIL release and errors); a new family adds one line to
// FASTMASK_FAMILIES.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "binding.h"
#include "constants.h"
#include "cross_entropy.h"

namespace py = pybind11;
using fastmask::guarded;
using fastmask::ptr;

#define FASTMASK_FAMILIES(X) \
  X(rng)                     \
  X(padding)                 \
  X(masking)                 \
  X(spans)                   \
  X(t5)                      \
  X(image)                   \
  X(permutation)             \
  X(attention)               \
  X(pruning)                 \
  X(graph)                   \
  X(distillation)

namespace fastmask {
#define FASTMASK_DECLARE_BIND(family) void bind_##family(py::module_& m);
FASTMASK_FAMILIES(FASTMASK_DECLARE_BIND)
#undef FASTMASK_DECLARE_BIND
}  // namespace fastmask

// fastmask._C's constants (constants.h), checked against the Python side at import.
static void export_constants(py::module_& m) {
  using namespace fastmask;
  m.attr("STREAM_VERSION") = kStreamVersion;
  py::dict purposes;
  purposes["RAW"] = static_cast<uint32_t>(kPurposeRaw);
  purposes["MLM_TOKENS"] = static_cast<uint32_t>(kPurposeMlmTokens);
  purposes["WHOLE_WORD"] = static_cast<uint32_t>(kPurposeWholeWord);
  purposes["SPANS"] = static_cast<uint32_t>(kPurposeSpans);
  purposes["T5_SPANS"] = static_cast<uint32_t>(kPurposeT5Spans);
  purposes["UL2_DENOISER"] = static_cast<uint32_t>(kPurposeUl2Denoiser);
  purposes["BLOCK_MASK"] = static_cast<uint32_t>(kPurposeBlockMask);
  purposes["PATCH_SHUFFLE"] = static_cast<uint32_t>(kPurposePatchShuffle);
  purposes["BLOCK_TOP_UP"] = static_cast<uint32_t>(kPurposeBlockTopUp);
  purposes["PERMUTATION"] = static_cast<uint32_t>(kPurposePermutation);
  purposes["EDGES"] = static_cast<uint32_t>(kPurposeEdges);
  purposes["PATHS"] = static_cast<uint32_t>(kPurposePaths);
  m.attr("PURPOSES") = purposes;
  py::dict dtypes;
  dtypes["int32"] = static_cast<int>(kInt32);
  dtypes["int64"] = static_cast<int>(kInt64);
  dtypes["float32"] = static_cast<int>(kFloat32);
  dtypes["float16"] = static_cast<int>(kFloat16);
  dtypes["bfloat16"] = static_cast<int>(kBFloat16);
  dtypes["float64"] = static_cast<int>(kFloat64);
  dtypes["bool"] = static_cast<int>(kBool);
  dtypes["uint8"] = static_cast<int>(kUInt8);
  m.attr("DTYPE_CODES") = dtypes;
  py::dict codes;
  codes["CONTINUES"] = static_cast<int>(kWordContinues);
  codes["STARTS"] = static_cast<int>(kWordStarts);
  codes["NO_WORD"] = static_cast<int>(kNoWord);
  m.attr("WORD_CODES") = codes;
  py::dict sources;
  sources["CODES"] = static_cast<int>(kWordCodes);
  sources["WORD_IDS"] = static_cast<int>(kWordIds);
  sources["OFFSETS"] = static_cast<int>(kWordOffsets);
  sources["TABLE"] = static_cast<int>(kWordTable);
  m.attr("WORD_SOURCES") = sources;
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastmask C++ CPU kernels";
  export_constants(m);
#define FASTMASK_BIND(family) fastmask::bind_##family(m);
  FASTMASK_FAMILIES(FASTMASK_BIND)
#undef FASTMASK_BIND

  // Masked cross-entropy (fastmask/cpp/cross_entropy.py): logits as (address, dtype code, rows, vocab,
  // row stride), labels as (address, dtype code, stride); weight (0: none), the outputs and the
  // per-row inputs in the accumulation dtype (fp32, fp64 for fp64 logits).
  auto ce_args = [](std::uintptr_t logits, int logits_dtype, int64_t rows, int64_t vocab, int64_t logits_stride,
                    std::uintptr_t labels, int labels_dtype, int64_t labels_stride, std::uintptr_t weight,
                    int64_t ignore_index, double label_smoothing, double z_loss, double softcap, int threads) {
    return fastmask::CrossEntropyArgs{ptr<const void>(logits), logits_dtype, rows, vocab, logits_stride,
                                      ptr<const void>(labels), labels_dtype, labels_stride, ptr<const void>(weight),
                                      ignore_index, label_smoothing, z_loss, softcap, threads};
  };
  m.def(
      "cross_entropy_forward",
      [ce_args](std::uintptr_t logits, int logits_dtype, int64_t rows, int64_t vocab, int64_t logits_stride,
                std::uintptr_t labels, int labels_dtype, int64_t labels_stride, std::uintptr_t weight, int64_t ignore_index,
                double label_smoothing, double z_loss, double softcap, std::uintptr_t loss, std::uintptr_t lse, int threads) -> std::string {
        return guarded([&] {
          fastmask::cross_entropy_forward(ce_args(logits, logits_dtype, rows, vocab, logits_stride, labels, labels_dtype,
                                                  labels_stride, weight, ignore_index, label_smoothing, z_loss, softcap, threads),
                                          ptr<void>(loss), ptr<void>(lse));
        });
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "cross_entropy_backward",
      [ce_args](std::uintptr_t logits, int logits_dtype, int64_t rows, int64_t vocab, int64_t logits_stride,
                std::uintptr_t labels, int labels_dtype, int64_t labels_stride, std::uintptr_t weight, int64_t ignore_index,
                double label_smoothing, double z_loss, double softcap, std::uintptr_t lse, int64_t lse_stride,
                std::uintptr_t grad_rows, int64_t grad_rows_stride, std::uintptr_t grad_lse, int64_t grad_lse_stride,
                std::uintptr_t grad, int64_t grad_stride, bool grad_zeroed, int threads) -> std::string {
        return guarded([&] {
          fastmask::cross_entropy_backward(ce_args(logits, logits_dtype, rows, vocab, logits_stride, labels, labels_dtype,
                                                   labels_stride, weight, ignore_index, label_smoothing, z_loss, softcap, threads),
                                           ptr<const void>(lse), lse_stride, ptr<const void>(grad_rows), grad_rows_stride,
                                           ptr<const void>(grad_lse), grad_lse_stride, ptr<void>(grad), grad_stride,
                                           grad_zeroed);
        });
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "cross_entropy_forward_inplace",
      [ce_args](std::uintptr_t logits, int logits_dtype, int64_t rows, int64_t vocab, int64_t logits_stride,
                std::uintptr_t labels, int labels_dtype, int64_t labels_stride, std::uintptr_t weight, int64_t ignore_index,
                double label_smoothing, double z_loss, double softcap, std::uintptr_t grad_scale, std::uintptr_t loss,
                std::uintptr_t lse, int threads) -> std::string {
        return guarded([&] {
          fastmask::cross_entropy_forward_inplace(
              ce_args(logits, logits_dtype, rows, vocab, logits_stride, labels, labels_dtype, labels_stride, weight,
                      ignore_index, label_smoothing, z_loss, softcap, threads),
              ptr<const void>(grad_scale), ptr<void>(loss), ptr<void>(lse));
        });
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "cross_entropy_argmax",
      [ce_args](std::uintptr_t logits, int logits_dtype, int64_t rows, int64_t vocab, int64_t logits_stride,
                std::uintptr_t labels, int labels_dtype, int64_t labels_stride, std::uintptr_t weight, int64_t ignore_index,
                double label_smoothing, double z_loss, double softcap, std::uintptr_t predicted, int threads) -> std::string {
        return guarded([&] {
          fastmask::cross_entropy_argmax(ce_args(logits, logits_dtype, rows, vocab, logits_stride, labels, labels_dtype,
                                                 labels_stride, weight, ignore_index, label_smoothing, z_loss, softcap, threads),
                                         ptr<void>(predicted));
        });
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "cross_entropy_scale_grad",
      [](std::uintptr_t grad, int dtype, int64_t rows, int64_t vocab, int64_t grad_stride, std::uintptr_t scale,
         int64_t scale_stride, int threads) -> std::string {
        return guarded([&] {
          fastmask::cross_entropy_scale_grad(ptr<void>(grad), dtype, rows, vocab, grad_stride, ptr<const void>(scale),
                                             scale_stride, threads);
        });
      },
      py::call_guard<py::gil_scoped_release>());
  // Test hooks of the cross-entropy kernels: force the portable code, the vector exp, the conversions.
  m.def("cross_entropy_simd", &fastmask::cross_entropy_simd, py::arg("enabled"));
  m.def(
      "cross_entropy_exp",
      [](std::uintptr_t in, std::uintptr_t out, int64_t n, bool simd) -> std::string {
        return guarded([&] {
          fastmask::cross_entropy_exp(ptr<const float>(in), ptr<float>(out), n, simd);
        });
      },
      py::arg("in"), py::arg("out"), py::arg("n"), py::arg("simd"));
  m.def(
      "cross_entropy_convert",
      [](std::uintptr_t in, int in_dtype, std::uintptr_t out, int out_dtype, int64_t n, bool simd) -> std::string {
        return guarded([&] {
          fastmask::cross_entropy_convert(ptr<const void>(in), in_dtype, ptr<void>(out), out_dtype, n, simd);
        });
      },
      py::arg("in"), py::arg("in_dtype"), py::arg("out"), py::arg("out_dtype"), py::arg("n"), py::arg("simd"));
}
