// pybind11 bindings of fastmask._C. Every function takes raw pointers (tensor.data_ptr()) as
// integers, plus sizes, strides and dtype codes checked on the Python side (fastmask/_cpp.py),
// and releases the GIL while it works.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cross_entropy.h"
#include "masking.h"
#include "padding.h"
#include "philox_block.h"
#include "random_words.h"
#include "spans.h"
#include "t5.h"
#include "image.h"

namespace py = pybind11;

template <typename T>
static T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

// Runs a kernel and hands back its error message, "" when none: no C++ exception ever reaches
// pybind11, which fastmask/cpp raises as ValueError. pybind11 shares its internals with any other
// extension built with the same compiler ABI (torch's, on a CUDA image) and then runs that module's
// exception translators on ours; on an H200 image (torch 2.11, g++ 13.3, pybind11 3.1) every error
// crashed the process that way.
template <typename F>
std::string guarded(F&& kernel) {
  try {
    kernel();
    return {};
  } catch (const std::exception& error) {
    return error.what();
  } catch (...) {
    return "fastmask: unknown C++ error";
  }
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastmask C++ CPU kernels";
  m.attr("STREAM_VERSION") = 1;

  // Collator padding (fastmask/collators.py): reads Python lists, so it keeps the GIL.
  m.def(
      "pad_sequences",
      [](py::handle rows, std::uintptr_t out, int dtype, int64_t batch, int64_t length, int64_t width, int64_t row_stride,
         int64_t pad_value, bool left, const std::string& name) -> std::string {
        return guarded([&] { fastmask::pad_sequences(rows, out, dtype, batch, length, width, row_stride, pad_value, left, name); });
      },
      py::arg("rows"), py::arg("out"), py::arg("dtype"), py::arg("batch"),
        py::arg("length"), py::arg("width"), py::arg("row_stride"), py::arg("pad_value"), py::arg("left"), py::arg("name"));

  m.def(
      "random_words",
      [](std::uintptr_t seed, std::uintptr_t keys, int keys_dtype, int64_t keys_stride, int64_t rows, int64_t length,
         uint32_t purpose, std::uintptr_t out, int threads) -> std::string {
        return guarded([&] {
          fastmask::random_words(ptr<const int64_t>(seed), ptr<const void>(keys), keys_dtype, keys_stride, rows, length,
                                 purpose, ptr<int64_t>(out), threads);
        });
      },
      py::arg("seed"), py::arg("keys"), py::arg("keys_dtype"), py::arg("keys_stride"), py::arg("rows"),
      py::arg("length"), py::arg("purpose"), py::arg("out"), py::arg("threads"),
      py::call_guard<py::gil_scoped_release>());

  // mask_tokens (fastmask/cpp/masking.py): each tensor as (address, dtype code, strides); an optional
  // tensor that is absent has address 0.
  m.def(
      "mask_tokens",
      [](std::uintptr_t ids, int ids_dtype, int64_t ids_stride0, int64_t ids_stride1, int64_t batch, int64_t length,
         std::uintptr_t seed, std::uintptr_t keys, int keys_dtype, int64_t keys_stride, std::uintptr_t thresholds,
         std::uintptr_t special_ids, int64_t num_special, std::uintptr_t special_mask, int special_mask_dtype,
         int64_t special_mask_stride0, int64_t special_mask_stride1, std::uintptr_t attention_mask,
         int attention_mask_dtype, int64_t attention_mask_stride0, int64_t attention_mask_stride1,
         std::uintptr_t lengths, int lengths_dtype, int64_t lengths_stride, int word_source, std::uintptr_t words,
         int words_dtype, int64_t words_stride0, int64_t words_stride1, int64_t words_stride2, std::uintptr_t replace_table,
         int replace_table_dtype, int64_t replace_table_stride, int64_t replace_count, int64_t mask_token_id,
         int64_t views, bool exact, int64_t max_predictions, int64_t ignore_index, int64_t vocab_size,
         std::uintptr_t out_ids, std::uintptr_t labels, std::uintptr_t positions, int threads) -> std::string {
        return guarded([&] {
          fastmask::MaskTokensArgs a;
          a.ids = {ptr<const void>(ids), ids_dtype, ids_stride0, ids_stride1};
          a.seed = ptr<const int64_t>(seed);
          a.keys = {ptr<const void>(keys), keys_dtype, keys_stride, 0};
          a.thresholds = ptr<const int64_t>(thresholds);
          a.special_ids = ptr<const int64_t>(special_ids);
          a.num_special = num_special;
          a.special_mask = {ptr<const void>(special_mask), special_mask_dtype, special_mask_stride0, special_mask_stride1};
          a.attention_mask = {ptr<const void>(attention_mask), attention_mask_dtype, attention_mask_stride0,
                              attention_mask_stride1};
          a.lengths = {ptr<const void>(lengths), lengths_dtype, lengths_stride, 0};
          a.word_source = word_source;  // 0: token mode
          a.words = {ptr<const void>(words), words_dtype, words_stride0, words_stride1};
          a.word_pair_stride = words_stride2;
          a.replace_table = {ptr<const void>(replace_table), replace_table_dtype, replace_table_stride, 0};
          a.replace_count = replace_count;
          a.mask_token_id = mask_token_id;
          a.views = views;
          a.exact = exact;
          a.max_predictions = max_predictions;
          a.ignore_index = ignore_index;
          a.vocab_size = vocab_size;
          a.batch = batch;
          a.length = length;
          a.out_ids = ptr<void>(out_ids);
          a.labels = ptr<void>(labels);
          a.positions = ptr<int64_t>(positions);
          a.threads = threads;
          fastmask::mask_tokens(a);
        });
      },
      py::call_guard<py::gil_scoped_release>());

  // T5 span corruption / UL2 (fastmask/cpp/t5.py): ids as (address, dtype code, strides), keys
  // (address 0: the row index), the denoiser table and sentinels (contiguous int64), the outputs.
  m.def(
      "span_corruption",
      [](std::uintptr_t ids, int ids_dtype, int64_t ids_stride0, int64_t ids_stride1, int64_t batch, int64_t length,
         std::uintptr_t seed, std::uintptr_t keys, int keys_dtype, int64_t keys_stride, std::uintptr_t table,
         int64_t num_denoisers, std::uintptr_t sentinels, int64_t num_sentinels, int64_t eos, int64_t pad,
         int64_t input_length, int64_t target_length, std::uintptr_t inputs, std::uintptr_t targets,
         std::uintptr_t input_lengths, std::uintptr_t target_lengths, std::uintptr_t denoiser, int threads,
         int64_t vocab_size) -> std::string {
        return guarded([&] {
          fastmask::SpanCorruptionArgs a{
              ptr<const void>(ids), ids_dtype, ids_stride0, ids_stride1, batch, length, ptr<const int64_t>(seed),
              ptr<const void>(keys), keys_dtype, keys_stride, ptr<const int64_t>(table), num_denoisers,
              ptr<const int64_t>(sentinels), num_sentinels, eos, pad, input_length, target_length, ptr<void>(inputs),
              ptr<void>(targets), ptr<int64_t>(input_lengths), ptr<int64_t>(target_lengths), ptr<int64_t>(denoiser),
              threads};
          a.vocab_size = vocab_size;
          fastmask::span_corruption(a);
        });
      },
      py::call_guard<py::gil_scoped_release>());

  // Image and patch masking (fastmask/cpp/image.py): keys (address 0: the row index), the block table
  // (contiguous int64), the outputs (contiguous).
  m.def(
      "block_mask",
      [](std::uintptr_t seed, std::uintptr_t keys, int keys_dtype, int64_t keys_stride, std::uintptr_t cum,
         std::uintptr_t shapes, int64_t most, int64_t num_shapes, int64_t batch, int64_t height, int64_t width,
         int64_t target, int64_t max_attempts, bool exact, std::uintptr_t out, int threads) -> std::string {
        return guarded([&] {
          fastmask::BlockMaskArgs a{ptr<const int64_t>(seed), ptr<const void>(keys), keys_dtype, keys_stride,
                                    ptr<const int64_t>(cum), ptr<const int64_t>(shapes), most, num_shapes, batch,
                                    height, width, target, max_attempts, exact, ptr<uint8_t>(out), threads};
          fastmask::block_mask(a);
        });
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "patch_shuffle",
      [](std::uintptr_t seed, std::uintptr_t keys, int keys_dtype, int64_t keys_stride, int64_t batch, int64_t length,
         int64_t keep, std::uintptr_t mask, std::uintptr_t ids_keep, std::uintptr_t ids_restore, int threads) -> std::string {
        return guarded([&] {
          fastmask::PatchShuffleArgs a{ptr<const int64_t>(seed), ptr<const void>(keys), keys_dtype, keys_stride, batch,
                                       length, keep, ptr<uint8_t>(mask), ptr<int64_t>(ids_keep),
                                       ptr<int64_t>(ids_restore), threads};
          fastmask::patch_shuffle(a);
        });
      },
      py::call_guard<py::gil_scoped_release>());

  // Span / n-gram masking (fastmask/cpp/spans.py): tensors as (address, dtype code, strides); address 0
  // means "not given" (keys: the row index). Thresholds as int64 values, table and specials contiguous int64.
  m.def(
      "mask_spans",
      [](std::uintptr_t ids, int ids_dtype, int64_t ids_stride0, int64_t ids_stride1, int64_t batch, int64_t length,
         std::uintptr_t seed, std::uintptr_t keys, int keys_dtype, int64_t keys_stride, int64_t select_threshold,
         int64_t mask_threshold, int64_t random_threshold, std::uintptr_t table, int64_t table_size,
         std::uintptr_t special_ids, int64_t num_special, std::uintptr_t special_mask, int special_mask_dtype,
         int64_t special_mask_stride0, int64_t special_mask_stride1, std::uintptr_t attention_mask,
         int attention_mask_dtype, int64_t attention_mask_stride0, int64_t attention_mask_stride1, std::uintptr_t codes,
         int64_t codes_stride0, int64_t codes_stride1, std::uintptr_t replace_table, int replace_table_dtype,
         int64_t replace_table_stride, int64_t replace_count, int64_t mask_token_id, int64_t max_predictions,
         int64_t ignore_index, int64_t vocab_size, std::uintptr_t out_ids, std::uintptr_t labels,
         std::uintptr_t positions, int threads) -> std::string {
        return guarded([&] {
          fastmask::MaskSpansArgs a;
          a.ids = {ptr<const void>(ids), ids_dtype, ids_stride0, ids_stride1};
          a.seed = ptr<const int64_t>(seed);
          a.keys = {ptr<const void>(keys), keys_dtype, keys_stride, 0};
          a.select_threshold = select_threshold;
          a.mask_threshold = mask_threshold;
          a.random_threshold = random_threshold;
          a.table = ptr<const int64_t>(table);
          a.table_size = table_size;
          a.special_ids = ptr<const int64_t>(special_ids);
          a.num_special = num_special;
          a.special_mask = {ptr<const void>(special_mask), special_mask_dtype, special_mask_stride0, special_mask_stride1};
          a.attention_mask = {ptr<const void>(attention_mask), attention_mask_dtype, attention_mask_stride0,
                              attention_mask_stride1};
          a.codes = {ptr<const void>(codes), 7, codes_stride0, codes_stride1};
          a.replace_table = {ptr<const void>(replace_table), replace_table_dtype, replace_table_stride, 0};
          a.replace_count = replace_count;
          a.mask_token_id = mask_token_id;
          a.max_predictions = max_predictions;
          a.ignore_index = ignore_index;
          a.vocab_size = vocab_size;
          a.batch = batch;
          a.length = length;
          a.out_ids = ptr<void>(out_ids);
          a.labels = ptr<void>(labels);
          a.positions = ptr<int64_t>(positions);
          a.threads = threads;
          fastmask::mask_spans(a);
        });
      },
      py::call_guard<py::gil_scoped_release>());

  // Test hooks: the block Philox with a chosen implementation, words[j][i] flattened.
  m.def("philox_block_avx2", &fastmask::philox_block_avx2);
  m.def(
      "philox_block",
      [](bool fastest, uint64_t seed, uint64_t key, uint32_t purpose, uint32_t first) {
        fastmask::PhiloxBlockWords words;
        fastmask::philox_block_with(fastest, seed, key, purpose, first, words);
        return std::vector<uint32_t>(&words[0][0], &words[0][0] + 4 * fastmask::kPhiloxBlock);
      },
      py::arg("fastest"), py::arg("seed"), py::arg("key"), py::arg("purpose"), py::arg("first"));

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
                std::uintptr_t grad_rows, int64_t grad_rows_stride, std::uintptr_t grad, int64_t grad_stride, int threads) -> std::string {
        return guarded([&] {
          fastmask::cross_entropy_backward(ce_args(logits, logits_dtype, rows, vocab, logits_stride, labels, labels_dtype,
                                                   labels_stride, weight, ignore_index, label_smoothing, z_loss, softcap, threads),
                                           ptr<const void>(lse), lse_stride, ptr<const void>(grad_rows), grad_rows_stride,
                                           ptr<void>(grad), grad_stride);
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
