// Attention masks (docs/attention.md), bit-identical to fastmask/reference/attention.py.
//   Per row: the runs of equal segment ids (one run [0, L) without documents), grouped by id and
//   sorted by start. Per query i: the interval [lo, hi) of the causal / prefix / window / length
//   conditions; its keys are the runs of i's id cut to [lo, hi) (one run per document in packed rows).
//   attention_dense writes each query's row as zero and one stretches (memset).
//   attention_blocks counts, per (query block, key block), the queries whose cut runs touch and cover
//   the key block, with difference arrays: O(L + (L / B)^2) for packed rows, never L^2.
#include "attention.h"

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "binding.h"
#include "common.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastmask {
namespace {

// A dense mask is L^2 fresh bytes: with 2 MiB pages its first touch takes 512x fewer page faults
// (where transparent huge pages are "madvise"; a no-op hint elsewhere).
void prefer_huge_pages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// The runs of one row, grouped by segment id: runs start[k], end[k] (k in (id, start) order); the
// query at position p has its id's runs at k in [first[p], last[p]).
struct Row {
  std::vector<int64_t> start, end;
  std::vector<int32_t> first, last;
  int64_t prefix = 0, limit = 0;  // prefix length (causal kinds), keys below `limit` (the row length)
};

void build_row(const AttentionArgs& a, int64_t b, Row& row) {
  const int64_t n = a.length;
  row.prefix = a.prefix ? load_int(a.prefix, a.prefix_dtype, b, a.prefix_stride) : 0;
  row.limit = a.lengths ? load_int(a.lengths, a.lengths_dtype, b, a.lengths_stride) : n;
  row.first.assign(n, 0);
  row.last.assign(n, 1);
  if (a.segment_ids == nullptr) {
    row.start.assign(1, 0);
    row.end.assign(1, n);
    return;
  }
  std::vector<int64_t> ids(n), run_start, run_id;
  std::vector<int32_t> run_of(n);
  for (int64_t p = 0; p < n; ++p) {
    ids[p] = load_int(a.segment_ids, a.segment_dtype, b * a.segment_stride0 + p * a.segment_stride1, 1);
    if (p == 0 || ids[p] != ids[p - 1]) {
      run_start.push_back(p);
      run_id.push_back(ids[p]);
    }
    run_of[p] = static_cast<int32_t>(run_start.size() - 1);
  }
  const size_t runs = run_start.size();
  std::vector<int32_t> order(runs), rank(runs);
  std::iota(order.begin(), order.end(), 0);
  // Runs are numbered by start, so a stable sort by id keeps each id's runs in start order.
  std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return run_id[x] < run_id[y]; });
  row.start.resize(runs);
  row.end.resize(runs);
  std::vector<int32_t> group_first(runs), group_last(runs);
  for (size_t k = 0; k < runs; ++k) {
    const int32_t r = order[k];
    rank[r] = static_cast<int32_t>(k);
    row.start[k] = run_start[r];
    row.end[k] = r + 1 < static_cast<int32_t>(runs) ? run_start[r + 1] : n;
  }
  for (size_t k = 0; k < runs;) {
    size_t e = k + 1;
    while (e < runs && run_id[order[e]] == run_id[order[k]]) ++e;
    for (size_t x = k; x < e; ++x) {
      group_first[x] = static_cast<int32_t>(k);
      group_last[x] = static_cast<int32_t>(e);
    }
    k = e;
  }
  for (int64_t p = 0; p < n; ++p) {
    const int32_t k = rank[run_of[p]];
    row.first[p] = group_first[k];
    row.last[p] = group_last[k];
  }
}

// The interval [lo, hi) of keys that the causal, prefix, window and length conditions allow query i.
inline void query_interval(const AttentionArgs& a, const Row& row, int64_t i, int64_t& lo, int64_t& hi) {
  lo = 0;
  hi = std::min(a.length, row.limit);
  if (a.causal) hi = std::min(hi, std::max(i + 1, row.prefix));
  if (a.window > 0) {
    lo = std::max<int64_t>(lo, i - a.window + 1);
    hi = std::min(hi, i + a.window);
  }
}

std::vector<Row> build_rows(const AttentionArgs& a) {
  if (a.batch < 0 || a.length < 0) fail("attention_mask: negative shape");
  for (int64_t b = 0; b < a.batch; ++b) {
    if (a.prefix) {
      const int64_t v = load_int(a.prefix, a.prefix_dtype, b, a.prefix_stride);
      if (v < 0 || v > a.length) fail("prefix_lengths: ", v, " at row ", b, " is outside [0, ", a.length, "]");
    }
    if (a.lengths) {
      const int64_t v = load_int(a.lengths, a.lengths_dtype, b, a.lengths_stride);
      if (v < 0 || v > a.length) fail("lengths: ", v, " at row ", b, " is outside [0, ", a.length, "]");
    }
  }
  std::vector<Row> rows(a.batch);
  parallel_for(a.batch, a.threads, [&](int64_t b) { build_row(a, b, rows[b]); });
  return rows;
}

constexpr int64_t kQueriesPerTask = 64;

}  // namespace

void attention_dense(const AttentionArgs& a, uint8_t* out) {
  const std::vector<Row> rows = build_rows(a);
  const int64_t n = a.length, chunks = (n + kQueriesPerTask - 1) / kQueriesPerTask;
  prefer_huge_pages(out, a.batch * n * n);
  parallel_for(a.batch * chunks, a.threads, [&](int64_t task) {
    const int64_t b = task / chunks, q0 = (task % chunks) * kQueriesPerTask, q1 = std::min(n, q0 + kQueriesPerTask);
    const Row& row = rows[b];
    for (int64_t i = q0; i < q1; ++i) {
      uint8_t* line = out + (b * n + i) * n;
      int64_t lo, hi, cursor = 0;
      query_interval(a, row, i, lo, hi);
      for (int32_t k = row.first[i]; k < row.last[i]; ++k) {
        const int64_t s = std::max(lo, row.start[k]), e = std::min(hi, row.end[k]);
        if (s >= e) continue;
        std::memset(line + cursor, 0, s - cursor);
        std::memset(line + s, 1, e - s);
        cursor = e;
      }
      std::memset(line + cursor, 0, n - cursor);
    }
  });
}

void attention_blocks(const AttentionArgs& a, int64_t block, int8_t* out) {
  if (block < 1) fail("block_size: expected a positive integer, got ", block);
  const std::vector<Row> rows = build_rows(a);
  const int64_t n = a.length, blocks = (n + block - 1) / block;
  parallel_for(a.batch * blocks, a.threads, [&](int64_t task) {
    static thread_local std::vector<int32_t> touch, cover;
    touch.assign(blocks + 1, 0);
    cover.assign(blocks + 1, 0);
    const int64_t b = task / blocks, q0 = (task % blocks) * block, q1 = std::min(n, q0 + block);
    const Row& row = rows[b];
    for (int64_t i = q0; i < q1; ++i) {
      int64_t lo, hi;
      query_interval(a, row, i, lo, hi);
      for (int32_t k = row.first[i]; k < row.last[i]; ++k) {
        const int64_t s = std::max(lo, row.start[k]), e = std::min(hi, row.end[k]);
        if (s >= e) continue;
        ++touch[s / block];
        --touch[(e - 1) / block + 1];
        const int64_t cs = (s + block - 1) / block, ce = e / block;
        if (cs < ce) {
          ++cover[cs];
          --cover[ce];
        }
      }
    }
    int8_t* states = out + task * blocks;
    int32_t touching = 0, covering = 0;
    for (int64_t k = 0; k < blocks; ++k) {
      touching += touch[k];
      covering += cover[k];
      states[k] = covering == block ? 2 : (touching > 0 ? 1 : 0);
    }
  });
}

// --- bindings: views in, the error message ("" when none) out (csrc/binding.h) -------------------

namespace {

// segment_ids [batch, length], prefix_lengths and lengths [batch]; absent ones arrive with no data.
AttentionArgs attention_args(const OptionalView& segment_ids, const OptionalView& prefix, const OptionalView& lengths,
                             int64_t batch, int64_t length, bool causal, int64_t window, int threads) {
  return AttentionArgs{segment_ids.data, segment_ids.dtype, segment_ids.stride[0], segment_ids.stride[1],
                       prefix.data,      prefix.dtype,      prefix.stride[0],      lengths.data,
                       lengths.dtype,    lengths.stride[0], batch,                 length,
                       causal,           window,            threads};
}

void attention_dense_entry(OptionalView segment_ids, OptionalView prefix_lengths, OptionalView lengths, int64_t batch,
                           int64_t length, bool causal, int64_t window, TensorView out, int threads) {
  attention_dense(attention_args(segment_ids, prefix_lengths, lengths, batch, length, causal, window, threads),
                  output<uint8_t>(out, "out", {batch, length, length}));
}

void attention_blocks_entry(OptionalView segment_ids, OptionalView prefix_lengths, OptionalView lengths, int64_t batch,
                            int64_t length, bool causal, int64_t window, int64_t block, TensorView out, int threads) {
  if (block < 1) fail("block_size: expected a positive integer, got ", block);
  const int64_t blocks = (length + block - 1) / block;
  attention_blocks(attention_args(segment_ids, prefix_lengths, lengths, batch, length, causal, window, threads), block,
                   output<int8_t>(out, "out", {batch, blocks, blocks}));
}

}  // namespace

void bind_attention(pybind11::module_& m) {
  namespace py = pybind11;
  def_kernel(m, "attention_dense", &attention_dense_entry, py::arg("segment_ids"), py::arg("prefix_lengths"),
             py::arg("lengths"), py::arg("batch"), py::arg("length"), py::arg("causal"), py::arg("window"),
             py::arg("out"), py::arg("threads"));
  def_kernel(m, "attention_blocks", &attention_blocks_entry, py::arg("segment_ids"), py::arg("prefix_lengths"),
             py::arg("lengths"), py::arg("batch"), py::arg("length"), py::arg("causal"), py::arg("window"),
             py::arg("block"), py::arg("out"), py::arg("threads"));
}

}  // namespace fastmask
