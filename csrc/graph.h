// Graph masks (docs/graph.md), bit-identical to fastmask/reference/graph.py. Each entry throws
// std::invalid_argument on bad input (the binding returns it as a message). edge_index: [2, E]
// int32/int64 (dtype code) with strides in elements.
#pragma once

#include <cstdint>
#include <string>

namespace pybind11 {
class module_;
}

namespace fastmask {

struct EdgeIndex {
  const void* data;
  int dtype;
  int64_t stride0, stride1, edges;
};

// out[d] = word d % 4 of (seed, key, position d / 4, purpose) < threshold, for d in [0, n).
void graph_drops(const int64_t* seed, const int64_t* key, int64_t n, int64_t threshold, uint32_t purpose,
                 uint8_t* out, int threads);

// Ids checked (>= 0, and < num_nodes when num_nodes >= 0), then graph_drops for the edges (purpose EDGES).
void edge_mask(const EdgeIndex& ei, const int64_t* seed, const int64_t* key, int64_t threshold,
               int64_t num_nodes, uint8_t* out, int threads);

// Random walks from sampled roots on the CSR of edge_index; out[e] = 1 for every edge walked.
void path_mask(const EdgeIndex& ei, const int64_t* seed, const int64_t* key, int64_t num_nodes,
               int64_t root_threshold, int64_t walk_length, int64_t walks_per_node, uint8_t* out, int threads);

// Columns of edge_index split by masked[e] into remaining (0) and masked (1), in order; undirected:
// only columns with row <= col, each output followed by its flips. counts[2] are the output widths:
// with both outputs nullptr only counted, else both (contiguous [2, counts[i]]) written.
void split_edges(const EdgeIndex& ei, const uint8_t* masked, bool undirected, int64_t* counts, void* remaining,
                 void* masked_out, int threads);

void bind_graph(pybind11::module_& m);

}  // namespace fastmask
