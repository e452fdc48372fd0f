// How a family binds its kernels (a bind_<family>(py::module_&) at the end of csrc/<family>.cpp,
// listed once in module.cpp's FASTMASK_FAMILIES): tensors arrive as TensorView / OptionalView
// (fastmask.cpp.view: (address, dtype code, shape, strides) or None), scalars as themselves, every
// argument named. def_kernel is the one wrapper: it checks every view once, releases the GIL, and
// returns the kernel's error message ("" when none) instead of throwing through pybind11.
#pragma once

#include <pybind11/pybind11.h>

#include <array>
#include <initializer_list>
#include <cstdint>
#include <string>
#include <utility>

#include "common.h"

namespace pybind11::detail {

// (address, dtype code, shape, strides) -> a view; None -> a view that is not given() (an error for a
// required TensorView, reported by name in def_kernel).
template <typename View>
struct view_caster {
  PYBIND11_TYPE_CASTER(View, const_name("TensorView"));

  bool load(handle src, bool) {
    value = View{};
    if (src.is_none()) return true;
    PyObject* t = src.ptr();
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 4) return false;
    PyObject* shape = PyTuple_GET_ITEM(t, 2);
    PyObject* strides = PyTuple_GET_ITEM(t, 3);
    if (!PyTuple_Check(shape) || !PyTuple_Check(strides)) return false;
    const Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
    if (ndim > fastmask::TensorView::kMaxDims || PyTuple_GET_SIZE(strides) != ndim) return false;
    value.data = PyLong_AsVoidPtr(PyTuple_GET_ITEM(t, 0));
    value.dtype = static_cast<int>(PyLong_AsLong(PyTuple_GET_ITEM(t, 1)));
    value.ndim = static_cast<int>(ndim);
    for (Py_ssize_t d = 0; d < ndim; ++d) {
      value.size[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
      value.stride[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(strides, d));
    }
    if (PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    return true;
  }

  static handle cast(const View&, return_value_policy, handle) { return none().release(); }
};

template <>
struct type_caster<fastmask::TensorView> : view_caster<fastmask::TensorView> {};
template <>
struct type_caster<fastmask::OptionalView> : view_caster<fastmask::OptionalView> {};

}  // namespace pybind11::detail

namespace fastmask {

template <typename T>
T* ptr(std::uintptr_t address) {
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

// A view's pointer, sizes and strides: what any kernel may then trust. Null data is allowed for an
// absent optional tensor and an empty one; anything else null is a tensor without CPU memory (meta).
inline void check_view(const TensorView& v, const char* name, bool required) {
  if (!v.given()) {
    if (required) fail(name, ": expected a tensor, got None");
    return;
  }
  for (int d = 0; d < v.ndim; ++d) {
    if (v.size[d] < 0) fail(name, ": negative size ", v.size[d], " in dimension ", d);
    if (v.stride[d] < 0) fail(name, ": negative stride ", v.stride[d], " in dimension ", d);
  }
  if (v.data == nullptr && v.numel() > 0)
    fail(name, ": expected a tensor in CPU memory, got no data (a meta tensor?)");
}

inline void check_arg(const TensorView& v, const char* name) { check_view(v, name, true); }
inline void check_arg(const OptionalView& v, const char* name) { check_view(v, name, false); }
template <typename T>
void check_arg(const T&, const char*) {}

// A required view read as contiguous int64 values (seeds, thresholds, host-built tables).
inline const int64_t* int64_data(const TensorView& v, const char* name) {
  if (v.dtype != kInt64) fail(name, ": expected int64, got dtype code ", v.dtype);
  if (v.numel() > 1 && v.stride[v.ndim - 1] != 1) fail(name, ": expected a contiguous tensor");
  return v.as<int64_t>();
}

// An output the Python launcher allocated: contiguous, of the given shape.
template <typename T>
T* output(const TensorView& v, const char* name, std::initializer_list<int64_t> shape) {
  bool ok = v.ndim == static_cast<int>(shape.size());
  int64_t numel = 1;
  for (int d = 0; ok && d < v.ndim; ++d) {
    ok = v.size[d] == shape.begin()[d];
    numel *= v.size[d];
  }
  // Row-major strides, except where a size of 0 or 1 makes them meaningless.
  int64_t expected = 1;
  for (int d = v.ndim - 1; ok && numel > 0 && d >= 0; --d) {
    ok = v.size[d] <= 1 || v.stride[d] == expected;
    expected *= v.size[d];
  }
  if (!ok) fail(name, ": expected a contiguous output of the launcher's shape");
  return v.as_output<T>();
}

// A required 2-D input's (rows, columns).
inline std::pair<int64_t, int64_t> matrix_shape(const TensorView& v, const char* name) {
  if (v.ndim != 2) fail(name, ": expected 2 dimensions, got ", v.ndim);
  return {v.size[0], v.size[1]};
}

// m.def(name, kernel) with the arguments named by `names` (py::arg(...) each, in order): the views
// checked, the GIL released, errors returned as messages.
template <typename... Args, typename... Names>
void def_kernel(pybind11::module_& m, const char* name, void (*kernel)(Args...), const Names&... names) {
  static_assert(sizeof...(Args) == sizeof...(Names), "def_kernel: name every argument");
  const std::array<const char*, sizeof...(Args)> labels{names.name...};
  m.def(
      name,
      [kernel, labels](Args... args) -> std::string {
        return guarded([&] {
          std::size_t i = 0;
          (check_arg(args, labels[i++]), ...);
          kernel(std::forward<Args>(args)...);
        });
      },
      names..., pybind11::call_guard<pybind11::gil_scoped_release>());
}

}  // namespace fastmask
