// Magnitude pruning masks (docs/pruning.md), bit-identical to fastmask/reference/pruning.py.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pybind11 {
class module_;
}

namespace fastmask {

// Tensors of one float dtype (code), contiguous; masks contiguous bool of the same sizes. counts: one
// count (all tensors one group) or one per tensor (each tensor its own group). Returns an error
// message, "" when none.
std::string magnitude_masks(const std::vector<std::uintptr_t>& scores, const std::vector<int64_t>& numels, int dtype,
                            const std::vector<int64_t>& counts, const std::vector<std::uintptr_t>& masks, int threads);

// N:M: each group of m consecutive elements keeps its n largest keys (ties: lower index pruned first).
std::string nm_mask(std::uintptr_t scores, int64_t numel, int dtype, int64_t n, int64_t m, std::uintptr_t mask,
                    int threads);

// Adds these to fastmask._C (called once from csrc/module.cpp).
void bind_pruning(pybind11::module_& m);

}  // namespace fastmask
