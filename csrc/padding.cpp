#include "padding.h"

#include <limits>

#include "binding.h"
#include "common.h"

namespace py = pybind11;

namespace fastmask {
namespace {

template <typename T>
void fill(T* row, int64_t count, int64_t value) {
  for (int64_t i = 0; i < count; ++i) row[i] = static_cast<T>(value);
}

// One item: an integer, or (width > 1) a sequence of `width` integers, written at out[0 .. width).
template <typename T>
void store(PyObject* item, T* out, int64_t width, int64_t low, int64_t high, const std::string& name, int64_t b,
           int64_t i) {
  py::object inner;
  PyObject** values = &item;
  if (width > 1) {
    inner = py::reinterpret_steal<py::object>(PySequence_Fast(item, "not a sequence"));
    if (!inner || PySequence_Fast_GET_SIZE(inner.ptr()) != width) {
      PyErr_Clear();
      fail(name, ": feature ", b, " position ", i, " is not a sequence of ", width, " integers");
    }
    values = PySequence_Fast_ITEMS(inner.ptr());
  }
  for (int64_t k = 0; k < width; ++k) {
    int overflow = 0;
    const long long value = PyLong_AsLongLongAndOverflow(values[k], &overflow);  // uses __index__ (numpy ints too)
    if (value == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      fail(name, ": feature ", b, " position ", i, " is not an integer");
    }
    if (overflow != 0 || value < low || value > high) {
      fail(name, ": feature ", b, " position ", i, " holds a value outside [", low, ", ", high, "]");
    }
    out[k] = static_cast<T>(value);
  }
}

template <typename T>
void pad_rows(py::handle rows, T* out, int64_t batch, int64_t length, int64_t width, int64_t row_stride,
              int64_t pad_value, bool left, const std::string& name) {
  constexpr int64_t low = std::numeric_limits<T>::min();
  constexpr int64_t high = std::numeric_limits<T>::max();
  if (pad_value < low || pad_value > high) fail(name, ": padding value ", pad_value, " does not fit the output dtype");
  for (int64_t b = 0; b < batch; ++b) {
    py::object item = py::reinterpret_steal<py::object>(PySequence_GetItem(rows.ptr(), b));
    if (!item) throw py::error_already_set();
    // PySequence_Fast: lists and tuples as they are, anything else iterable copied into a list once.
    py::object seq = py::reinterpret_steal<py::object>(PySequence_Fast(item.ptr(), "not a sequence"));
    if (!seq) {
      PyErr_Clear();
      fail(name, ": feature ", b, " is not a sequence of integers (got ", std::string(py::str(py::type::of(item))), ")");
    }
    const int64_t n = PySequence_Fast_GET_SIZE(seq.ptr());
    if (n > length) fail(name, ": feature ", b, " has ", n, " items, more than the padded length ", length);
    PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
    T* row = out + b * row_stride;
    const int64_t start = left ? length - n : 0;
    fill(row, start * width, pad_value);
    for (int64_t i = 0; i < n; ++i) store(items[i], row + (start + i) * width, width, low, high, name, b, i);
    fill(row + (start + n) * width, (length - start - n) * width, pad_value);
  }
}

}  // namespace

void pad_sequences(py::handle rows, std::uintptr_t out, int dtype, int64_t batch, int64_t length, int64_t width,
                   int64_t row_stride, int64_t pad_value, bool left, const std::string& name) {
  if (width < 1) fail(name, ": width must be at least 1, got ", width);
  switch (dtype) {
    case kInt64: return pad_rows(rows, reinterpret_cast<int64_t*>(out), batch, length, width, row_stride, pad_value, left, name);
    case kInt32: return pad_rows(rows, reinterpret_cast<int32_t*>(out), batch, length, width, row_stride, pad_value, left, name);
    case kUInt8: return pad_rows(rows, reinterpret_cast<uint8_t*>(out), batch, length, width, row_stride, pad_value, left, name);
    default: fail(name, ": unsupported output dtype code ", dtype);
  }
}

// Collator padding (fastmask/collators.py): reads Python lists, so it keeps the GIL.
void bind_padding(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "pad_sequences",
      [](py::handle rows, std::uintptr_t out, int dtype, int64_t batch, int64_t length, int64_t width, int64_t row_stride,
         int64_t pad_value, bool left, const std::string& name) -> std::string {
        return guarded([&] { pad_sequences(rows, out, dtype, batch, length, width, row_stride, pad_value, left, name); });
      },
      py::arg("rows"), py::arg("out"), py::arg("dtype"), py::arg("batch"), py::arg("length"), py::arg("width"),
      py::arg("row_stride"), py::arg("pad_value"), py::arg("left"), py::arg("name"));
}
}  // namespace fastmask
