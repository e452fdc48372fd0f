// Shared helpers of every fastmask C++ kernel: dtype codes, argument checks, the thread policy.
#pragma once

#include <cstdint>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>

#include "constants.h"

namespace fastmask {

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
