// pybind11 bindings of the distillation kernel (fastmask/cpp/distillation.py), registered by
// module.cpp through bind_distillation. As there, errors come back as messages, never as a C++
// exception through pybind11.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <exception>
#include <string>

#include "distillation.h"

namespace py = pybind11;

namespace fastmask {

void bind_distillation(py::module_& m) {
  m.def(
      "distill_chunk",
      [](std::uintptr_t student, std::uintptr_t teacher, int dtype, int64_t rows, int64_t vocab, int64_t student_stride,
         int64_t teacher_stride, std::uintptr_t labels, int labels_dtype, int64_t labels_stride, std::uintptr_t grad_scale,
         int64_t grad_scale_stride, double temperature, int divergence, double beta, double hard_weight,
         int64_t ignore_index, bool write_grad, std::uintptr_t div, std::uintptr_t ce, int threads) -> std::string {
        const DistillArgs args{reinterpret_cast<void*>(student), reinterpret_cast<const void*>(teacher), dtype, rows, vocab,
                               student_stride, teacher_stride, reinterpret_cast<const void*>(labels), labels_dtype,
                               labels_stride, reinterpret_cast<const void*>(grad_scale), grad_scale_stride, temperature,
                               divergence, beta, hard_weight, ignore_index, write_grad, threads};
        try {
          distill_chunk(args, reinterpret_cast<void*>(div), reinterpret_cast<void*>(ce));
          return {};
        } catch (const std::exception& error) {
          return error.what();
        } catch (...) {
          return "fastmask: unknown C++ error";
        }
      },
      py::call_guard<py::gil_scoped_release>());
  m.def("distillation_simd", &distillation_simd, py::arg("enabled"));
}

}  // namespace fastmask
