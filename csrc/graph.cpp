// Graph masks (docs/graph.md). Decisions come four per Philox call (word d % 4 of position d / 4),
// in blocks of kPhiloxBlock positions (AVX2 where the CPU has it). Walks: a stable counting sort of
// the rows gives the CSR (an edge's rank in its row is its edge_index order), then one task per
// node walks from it when it is a root; walks that share an edge all store 1 into its byte.
#include "graph.h"

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "binding.h"
#include "common.h"
#include "philox.h"
#include "philox_block.h"

namespace fastmask {
namespace {

constexpr uint32_t kStepShift = 16;                         // c1 = PATHS + 2^16 * t for walk step t
constexpr int64_t kTask = int64_t{1} << 16;                 // decisions / edges per task

template <typename T>
struct Columns {
  const T* data;
  int64_t s0, s1;
  int64_t row(int64_t e) const { return data[e * s1]; }
  int64_t col(int64_t e) const { return data[s0 + e * s1]; }
};

template <typename F>
void by_index_dtype(const EdgeIndex& ei, F&& body) {
  if (ei.dtype == kInt64) {
    body(Columns<int64_t>{static_cast<const int64_t*>(ei.data), ei.stride0, ei.stride1});
  } else if (ei.dtype == kInt32) {
    body(Columns<int32_t>{static_cast<const int32_t*>(ei.data), ei.stride0, ei.stride1});
  } else {
    fail("edge_index: expected int32 or int64, got dtype code ", ei.dtype);
  }
}

void check_ids(const EdgeIndex& ei, int64_t num_nodes, int threads) {
  by_index_dtype(ei, [&](auto c) {
    const int64_t per_side = (ei.edges + kTask - 1) / kTask;
    parallel_for(2 * per_side, threads, [&](int64_t task) {  // row 0's tasks first: the first bad id row-major
      const int side = task >= per_side;
      const int64_t begin = (task - side * per_side) * kTask, end = std::min(ei.edges, begin + kTask);
      int64_t low = 0, high = 0;  // a vectorised min / max first; the element scan only when one is out of range
      for (int64_t e = begin; e < end; ++e) {
        const int64_t v = side ? c.col(e) : c.row(e);
        low = std::min(low, v);
        high = std::max(high, v);
      }
      if (low >= 0 && (num_nodes < 0 || high < num_nodes)) return;
      for (int64_t e = begin; e < end; ++e) {
        const int64_t v = side ? c.col(e) : c.row(e);
        if (v < 0 || (num_nodes >= 0 && v >= num_nodes)) {
          if (num_nodes < 0) fail("edge_index: node id ", v, " at [", side, ", ", e, "] is negative");
          fail("edge_index: node id ", v, " at [", side, ", ", e, "] is outside [0, num_nodes = ", num_nodes, ")");
        }
      }
    });
  });
}

void drops(uint64_t seed, uint64_t key, int64_t n, int64_t threshold, uint32_t purpose, uint8_t* out, int threads) {
  constexpr int64_t kPerBlock = 4 * kPhiloxBlock;
  parallel_for((n + kTask - 1) / kTask, threads, [&](int64_t task) {
    PhiloxBlockWords w;
    const int64_t end = std::min(n, (task + 1) * kTask);
    for (int64_t d0 = task * kTask; d0 < end; d0 += kPerBlock) {  // kTask is a multiple of kPerBlock
      philox_block(seed, key, purpose, static_cast<uint32_t>(d0 / 4), w);
      const int64_t m = std::min(kPerBlock, end - d0);
      for (int64_t i = 0; i < m; ++i) out[d0 + i] = static_cast<int64_t>(w[i & 3][i >> 2]) < threshold;
    }
  });
}

}  // namespace

void graph_drops(const int64_t* seed, const int64_t* key, int64_t n, int64_t threshold, uint32_t purpose, uint8_t* out,
                 int threads) {
  drops(*seed, *key, n, threshold, purpose, out, threads);
}

void edge_mask(const EdgeIndex& ei, const int64_t* seed, const int64_t* key, int64_t threshold, int64_t num_nodes,
               uint8_t* out, int threads) {
  check_ids(ei, num_nodes, threads);
  drops(*seed, *key, ei.edges, threshold, kPurposeEdges, out, threads);
}

void path_mask(const EdgeIndex& ei, const int64_t* seed_ptr, const int64_t* key_ptr, int64_t num_nodes,
               int64_t root_threshold, int64_t walk_length, int64_t walks_per_node, uint8_t* out, int threads) {
  check_ids(ei, num_nodes, threads);
  std::memset(out, 0, ei.edges);
  if (ei.edges == 0 || num_nodes == 0) return;
  const uint64_t seed = *seed_ptr, key = *key_ptr;
  // int32 (E and num_nodes < 2^31, checked by fastmask.graph): half the cache misses of the random accesses.
  std::vector<int32_t> rowptr(num_nodes + 1, 0), order(ei.edges), target(ei.edges);
  by_index_dtype(ei, [&](auto c) {
    for (int64_t e = 0; e < ei.edges; ++e) ++rowptr[c.row(e) + 1];
    for (int64_t v = 0; v < num_nodes; ++v) rowptr[v + 1] += rowptr[v];
    std::vector<int32_t> fill(rowptr.begin(), rowptr.end() - 1);
    for (int64_t e = 0; e < ei.edges; ++e) {
      const int32_t slot = fill[c.row(e)]++;
      order[slot] = static_cast<int32_t>(e);
      target[slot] = static_cast<int32_t>(c.col(e));
    }
  });
  parallel_for((num_nodes + kTask - 1) / kTask, threads, [&](int64_t task) {
    const int64_t end = std::min(num_nodes, (task + 1) * kTask);
    for (int64_t root = task * kTask; root < end; ++root) {
      const uint32_t position = static_cast<uint32_t>(root);
      if (static_cast<int64_t>(stream_words(seed, key, position, kPurposePaths).w[0]) >= root_threshold) continue;
      uint32_t t = 1;
      for (int64_t w = 0; w < walks_per_node; ++w) {
        int64_t at = root;
        for (int64_t s = 0; s < walk_length; ++s, ++t) {
          const int64_t degree = rowptr[at + 1] - rowptr[at];
          if (degree == 0) {
            t += static_cast<uint32_t>(walk_length - s);  // the step counter stays walk * length + step
            break;
          }
          const uint64_t draw = stream_words(seed, key, position, kPurposePaths + (t << kStepShift)).w[0];
          const int64_t slot = rowptr[at] + static_cast<int64_t>((draw * static_cast<uint64_t>(degree)) >> 32);
          out[order[slot]] = 1;
          at = target[slot];
        }
      }
    }
  });
}

void split_edges(const EdgeIndex& ei, const uint8_t* masked, bool undirected, int64_t* counts, void* remaining,
                 void* masked_out, int threads) {
  by_index_dtype(ei, [&](auto c) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(c.data)>>;
    const int64_t tasks = (ei.edges + kTask - 1) / kTask;
    std::vector<int64_t> before(2 * (tasks + 1), 0);  // per task: columns to remaining, to masked
    parallel_for(tasks, threads, [&](int64_t task) {
      int64_t n[2] = {0, 0};
      const int64_t end = std::min(ei.edges, (task + 1) * kTask);
      for (int64_t e = task * kTask; e < end; ++e)
        if (!undirected || c.row(e) <= c.col(e)) ++n[masked[e] != 0];
      before[2 * (task + 1)] = n[0];
      before[2 * (task + 1) + 1] = n[1];
    });
    for (int64_t task = 0; task < tasks; ++task) {
      before[2 * (task + 1)] += before[2 * task];
      before[2 * (task + 1) + 1] += before[2 * task + 1];
    }
    const int64_t total[2] = {before[2 * tasks], before[2 * tasks + 1]};
    const int copies = undirected ? 2 : 1;
    counts[0] = copies * total[0];
    counts[1] = copies * total[1];
    if (remaining == nullptr && masked_out == nullptr) return;  // counting only (an empty output may also be null)
    T* outs[2] = {static_cast<T*>(remaining), static_cast<T*>(masked_out)};
    parallel_for(tasks, threads, [&](int64_t task) {
      int64_t at[2] = {before[2 * task], before[2 * task + 1]};
      const int64_t end = std::min(ei.edges, (task + 1) * kTask);
      for (int64_t e = task * kTask; e < end; ++e) {
        const int64_t r = c.row(e), q = c.col(e);
        if (undirected && r > q) continue;
        const int side = masked[e] != 0;
        T* out = outs[side];
        const int64_t width = copies * total[side], i = at[side]++;
        out[i] = static_cast<T>(r);
        out[width + i] = static_cast<T>(q);
        if (undirected) {  // the flips after the edges: [r | q] over [q | r]
          out[total[side] + i] = static_cast<T>(q);
          out[width + total[side] + i] = static_cast<T>(r);
        }
      }
    });
  });
}

namespace {

EdgeIndex edges_of(const TensorView& edge_index) {
  const auto [rows, edges] = matrix_shape(edge_index, "edge_index");
  if (rows != 2) fail("edge_index: expected 2 rows, got ", rows);
  return EdgeIndex{edge_index.data, edge_index.dtype, edge_index.stride[0], edge_index.stride[1], edges};
}

void graph_drops_entry(TensorView seed, TensorView key, int64_t n, int64_t threshold, int64_t purpose, TensorView out,
                       int threads) {
  graph_drops(int64_data(seed, "seed"), int64_data(key, "key"), n, threshold, static_cast<uint32_t>(purpose),
              output<uint8_t>(out, "out", {n}), threads);
}

void edge_mask_entry(TensorView edge_index, TensorView seed, TensorView key, int64_t threshold, int64_t num_nodes,
                     TensorView out, int threads) {
  const EdgeIndex ei = edges_of(edge_index);
  edge_mask(ei, int64_data(seed, "seed"), int64_data(key, "key"), threshold, num_nodes,
            output<uint8_t>(out, "out", {ei.edges}), threads);
}

void path_mask_entry(TensorView edge_index, TensorView seed, TensorView key, int64_t num_nodes, int64_t root_threshold,
                     int64_t walk_length, int64_t walks_per_node, TensorView out, int threads) {
  const EdgeIndex ei = edges_of(edge_index);
  path_mask(ei, int64_data(seed, "seed"), int64_data(key, "key"), num_nodes, root_threshold, walk_length,
            walks_per_node, output<uint8_t>(out, "out", {ei.edges}), threads);
}

// remaining and masked_out None: only counted (their widths are not known before).
void split_edges_entry(TensorView edge_index, TensorView masked, bool undirected, TensorView counts,
                       OptionalView remaining, OptionalView masked_out, int threads) {
  const EdgeIndex ei = edges_of(edge_index);
  split_edges(ei, output<uint8_t>(masked, "masked", {ei.edges}), undirected, output<int64_t>(counts, "counts", {2}),
              remaining.as_output<void>(), masked_out.as_output<void>(), threads);
}

}  // namespace

void bind_graph(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "graph_drops", &graph_drops_entry, py::arg("seed"), py::arg("key"), py::arg("n"), py::arg("threshold"),
             py::arg("purpose"), py::arg("out"), py::arg("threads"));
  def_kernel(m, "edge_mask", &edge_mask_entry, py::arg("edge_index"), py::arg("seed"), py::arg("key"),
             py::arg("threshold"), py::arg("num_nodes"), py::arg("out"), py::arg("threads"));
  def_kernel(m, "path_mask", &path_mask_entry, py::arg("edge_index"), py::arg("seed"), py::arg("key"),
             py::arg("num_nodes"), py::arg("root_threshold"), py::arg("walk_length"), py::arg("walks_per_node"),
             py::arg("out"), py::arg("threads"));
  def_kernel(m, "split_edges", &split_edges_entry, py::arg("edge_index"), py::arg("masked"), py::arg("undirected"),
             py::arg("counts"), py::arg("remaining"), py::arg("masked_out"), py::arg("threads"));
}

}  // namespace fastmask
