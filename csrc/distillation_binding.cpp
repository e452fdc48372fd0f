// pybind11 bindings of the distillation kernel (fastmask/cpp/distillation.py), registered by
// module.cpp through bind_distillation: typed, named views through def_kernel (csrc/binding.h), so
// errors come back as messages, never as a C++ exception through pybind11.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <tuple>

#include "binding.h"
#include "distillation.h"

namespace py = pybind11;

namespace fastmask {
namespace {

// student: [rows, vocab] with contiguous columns (the gradient is written there with write_grad);
// teacher the same in the student's dtype; labels and grad_scale [rows] through their strides.
// A single row's strides are meaningless: the kernel reads it as contiguous.
void distill_chunk_entry(TensorView student, TensorView teacher, TensorView labels, TensorView grad_scale,
                         double temperature, int divergence, double beta, double hard_weight, int64_t ignore_index,
                         bool write_grad, TensorView div, TensorView ce, int threads) {
  int64_t rows, vocab;
  std::tie(rows, vocab) = matrix_shape(student, "student");
  const bool many = rows > 1;
  const DistillArgs args{student.as_output<void>(), teacher.data, student.dtype, rows, vocab,
                         many ? student.stride[0] : vocab, many ? teacher.stride[0] : vocab, labels.data,
                         labels.dtype, many ? labels.stride[0] : 1, grad_scale.data, many ? grad_scale.stride[0] : 0,
                         temperature, divergence, beta, hard_weight, ignore_index, write_grad, threads};
  distill_chunk(args, output<void>(div, "div", {rows}), output<void>(ce, "ce", {rows}));
}

}  // namespace

void bind_distillation(py::module_& m) {
  def_kernel(m, "distill_chunk", &distill_chunk_entry, py::arg("student"), py::arg("teacher"), py::arg("labels"),
             py::arg("grad_scale"), py::arg("temperature"), py::arg("divergence"), py::arg("beta"),
             py::arg("hard_weight"), py::arg("ignore_index"), py::arg("write_grad"), py::arg("div"), py::arg("ce"),
             py::arg("threads"));
  m.def("distillation_simd", &distillation_simd, py::arg("enabled"));
}

}  // namespace fastmask
