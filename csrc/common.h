// Shared helpers of every fastmask C++ kernel: dtype codes, argument checks, the thread policy.
#pragma once

#include <cstdint>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>

#include "constants.h"

namespace fastmask {

// A tensor seen through a raw pointer: what fastmask.cpp.view(tensor) passes, checked by the binding
// wrapper (binding.h): data is null only for an absent optional tensor or an empty one; sizes and
// strides (in elements) are non-negative; dimensions past ndim have size 1 and stride 0.
struct TensorView {
  static constexpr int kMaxDims = 3;
  const void* data = nullptr;
  int dtype = -1;  // a DType code; -1 when absent
  int ndim = 0;
  int64_t size[kMaxDims] = {1, 1, 1};
  int64_t stride[kMaxDims] = {0, 0, 0};

  bool given() const { return dtype >= 0; }
  int64_t numel() const { return size[0] * size[1] * size[2]; }
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
  template <typename T>
  T* as_output() const { return static_cast<T*>(const_cast<void*>(data)); }
};

// An optional argument: None arrives as a view that is not given().
struct OptionalView : TensorView {};

// Raised as ValueError by pybind11 (std::invalid_argument maps to ValueError).
template <typename... Args>
[[noreturn]] void fail(const Args&... parts) {
  std::ostringstream msg;
  (msg << ... << parts);
  throw std::invalid_argument(msg.str());
}

// Loads element i of an integer tensor given by pointer, dtype code and stride (in elements).
inline int64_t load_int(const void* data, int dtype, int64_t i, int64_t stride) {
  switch (dtype) {
    case kInt32: return static_cast<const int32_t*>(data)[i * stride];
    case kInt64: return static_cast<const int64_t*>(data)[i * stride];
    case kBool: return static_cast<const uint8_t*>(data)[i * stride] != 0;  // torch bool: one byte, 0 or 1
    case kUInt8: return static_cast<const uint8_t*>(data)[i * stride];
    default: fail("fastmask: unsupported integer dtype code ", dtype);
  }
}

// The sample key of row b: keys[b], or b itself when no keys are given (the functional default,
// without allocating it).
inline uint64_t row_key(const TensorView& keys, int64_t b) {
  return static_cast<uint64_t>(keys.data == nullptr ? b : load_int(keys.data, keys.dtype, b, keys.stride[0]));
}

// One of n choices from a 32-bit word (Lemire): (word * n) >> 32, in [0, n). The product wraps like
// torch's int64 arithmetic would for n >= 2^32.
inline int64_t lemire(uint32_t word, int64_t n) {
  return static_cast<int64_t>(static_cast<uint64_t>(word) * static_cast<uint64_t>(n) >> 32);
}

// fastmask._rng.count: round-half-up of n * threshold / 2^32 (n < 2^31, threshold in [0, 2^32]).
inline int64_t count(int64_t threshold, int64_t n) { return (n * threshold + (int64_t{1} << 31)) >> 32; }

// The thread policy (docs/policies.md): the caller passes torch.get_num_threads(). With one thread
// we never enter an OpenMP region, so a forked DataLoader worker never touches the parent's pool
// (libgomp hangs after fork if it does).
//
// An exception must never leave an OpenMP region (that calls std::terminate). So inside the region
// every body's exception is caught, and after the loop the one thrown by the smallest index is
// rethrown: the same error as the one-thread loop, whatever the thread count (a body that checks
// its elements in order thus reports the first bad element in row-major order).
template <typename F>
void parallel_for(int64_t n, int threads, const F& body) {
  if (threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  int64_t first_error = n;
  std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    try {
      body(i);
    } catch (...) {
#pragma omp critical(fastmask_parallel_for_error)
      {
        if (i < first_error) {
          first_error = i;
          error = std::current_exception();
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace fastmask
