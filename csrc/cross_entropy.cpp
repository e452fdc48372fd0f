// Masked cross-entropy on the CPU: the specification is fastmask/reference/cross_entropy.py.
//
// Rows run in parallel (parallel_for). A row labelled ignore_index costs nothing in the forward and
// a zero-fill in the backward; every other row is read once in the forward (an online softmax: a
// running max and a rescaled sum) and once in the backward (p = exp(z - lse) recomputed). Labels are
// checked in one serial pass before any row runs, so a bad label raises before anything is written.
//
// Two implementations of a row:
// - AVX2 + FMA + F16C (chosen at run time, as csrc/philox_block.cpp does) for fp32, bf16 and fp16
//   logits, accumulating in fp32: the row is walked in chunks of kChunk values; a chunk is loaded
//   (converted and softcapped into a staging buffer if needed) while its max is taken, then its
//   exponentials are summed against the running max, so memory is read once and exp runs once per
//   value, vectorized (a Cody-Waite range reduction and Cephes' degree-5 polynomial, <= 2 ulp);
// - portable scalar code with libm, for fp64 logits (accumulating in fp64) and for machines without
//   AVX2.
#include "cross_entropy.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common.h"
#include "half.h"
#include "simd_avx2.h"

namespace fastmask {
namespace {

// Constants of one call, in the accumulation type A.
template <typename A>
struct Consts {
  int64_t vocab;
  A keep;          // 1 - label_smoothing
  A smooth;        // label_smoothing / vocab
  A total_weight;  // sum of the class weights (vocab without weights)
  A z_loss, two_z_loss;
  A cap, inv_cap;  // softcap and 1 / softcap
  bool smoothing, zloss, capped;
};

template <typename A>
Consts<A> make_consts(const CrossEntropyArgs& a) {
  Consts<A> k;
  k.vocab = a.vocab;
  k.keep = static_cast<A>(1 - a.label_smoothing);
  k.smooth = a.vocab > 0 ? static_cast<A>(a.label_smoothing / static_cast<double>(a.vocab)) : A(0);
  double total = static_cast<double>(a.vocab);
  if (a.weight != nullptr) {
    const A* w = static_cast<const A*>(a.weight);
    total = 0;
    for (int64_t c = 0; c < a.vocab; ++c) total += static_cast<double>(w[c]);
  }
  k.total_weight = static_cast<A>(total);
  k.z_loss = static_cast<A>(a.z_loss);
  k.two_z_loss = static_cast<A>(2 * a.z_loss);
  k.cap = static_cast<A>(a.softcap);
  k.inv_cap = a.softcap > 0 ? static_cast<A>(1 / a.softcap) : A(0);
  k.smoothing = a.label_smoothing > 0;
  k.zloss = a.z_loss > 0;
  k.capped = a.softcap > 0;
  return k;
}

#ifdef FASTMASK_SIMD_X86
bool cpu_has_avx() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx");
}
const bool kHasAvx = cpu_has_avx();
#endif

inline int64_t label_at(const CrossEntropyArgs& a, int64_t i) { return load_int(a.labels, a.labels_dtype, i, a.labels_stride); }

// Every label in [0, vocab) or ignore_index, checked before anything is written; the first bad row
// is reported, whatever the thread count.
void check_labels(const CrossEntropyArgs& a) {
  if (a.labels_dtype != kInt32 && a.labels_dtype != kInt64) fail("labels: expected int32 or int64 (dtype code ", a.labels_dtype, ")");
  for (int64_t i = 0; i < a.rows; ++i) {
    const int64_t y = label_at(a, i);
    if (y != a.ignore_index && (y < 0 || y >= a.vocab)) {
      fail("labels: label ", y, " at row ", i, " is outside [0, ", a.vocab, ") and not ignore_index");
    }
  }
}

template <typename A>
A row_loss(A lse, A z_y, A w_y, A weighted_z_sum, const Consts<A>& k) {
  A loss = k.keep * w_y * (lse - z_y);
  if (k.smoothing) loss = loss + k.smooth * (k.total_weight * lse - weighted_z_sum);
  if (k.zloss) loss = loss + k.z_loss * lse * lse;
  return loss;
}

// log-sum-exp from the running max m and the sum s of exp(z - m). A +inf logit gives NaN, as
// torch.nn.functional.cross_entropy does (its log_softmax computes inf - inf); so does a NaN (the
// online sum carries it).
template <typename A>
A finish_lse(double m, double s) {
  if (m == std::numeric_limits<double>::infinity()) return std::numeric_limits<A>::quiet_NaN();
  return static_cast<A>(m + std::log(s));
}

// A row's gradient, before the softcap's and logit scale's chain factors:
//   g_c = p_c * prob - smooth * w_c - target * [c == y]
// The forward-in-place and the backward fill it from their own scales (row_grad_* below).
template <typename A>
struct RowGrad {
  A prob, smooth, target;
};

// backward: upstream gradients grad_row of the row's loss and grad_lse of its log-sum-exp.
template <typename A>
RowGrad<A> row_grad_backward(A w_y, A lse, A grad_row, A grad_lse, const Consts<A>& k) {
  return {grad_row * (k.keep * w_y + k.smooth * k.total_weight + k.two_z_loss * lse) + grad_lse, grad_row * k.smooth,
          grad_row * k.keep * w_y};
}

// forward in place: scale_ce multiplies the cross-entropy and smoothing terms, scale_z the z-loss term
// (a weighted "mean" divides them by different counts).
template <typename A>
RowGrad<A> row_grad_inplace(A w_y, A lse, A scale_ce, A scale_z, const Consts<A>& k) {
  return {scale_ce * (k.keep * w_y + k.smooth * k.total_weight) + scale_z * k.two_z_loss * lse, scale_ce * k.smooth,
          scale_ce * k.keep * w_y};
}

#ifdef FASTMASK_SIMD_X86
// Zeros by non-temporal stores: no read for ownership of lines that are only overwritten.
__attribute__((target("avx"))) void zero_bytes_streaming(char* p, size_t bytes) {
  const size_t head = std::min(bytes, static_cast<size_t>((32 - (reinterpret_cast<uintptr_t>(p) & 31)) & 31));
  std::memset(p, 0, head);
  p += head;
  bytes -= head;
  const __m256i zero = _mm256_setzero_si256();
  for (; bytes >= 32; bytes -= 32, p += 32) _mm256_stream_si256(reinterpret_cast<__m256i*>(p), zero);
  std::memset(p, 0, bytes);
  _mm_sfence();
}
#endif

// Zeros a row. `resident`: the row's memory is in use (the logits, overwritten in place), where
// streaming stores save the read of every line (measured: 70 -> 40 ms for 425 MB of ignored rows).
// A fresh output (the backward's) pays a page fault per 4 KiB page on first touch, which dwarfs the
// stores (~300 ms for 425 MB here, seconds on a loaded machine), and each page the OS has just zeroed
// is in cache: plain memset. The C++ launcher avoids even that for large gradients: it hands the
// backward a fresh anonymous mapping (grad_zeroed), whose ignored rows are never touched at all.
// (Transparent huge pages were tried: 4x fewer fault costs when freed huge pages are at hand, but
// 2x slower than 4 KiB pages after other large allocations came and went, as in a training step.)
template <typename T>
void zero_row(T* out, int64_t vocab, bool resident) {
  const size_t bytes = static_cast<size_t>(vocab) * sizeof(T);
#ifdef FASTMASK_SIMD_X86
  if (resident && bytes >= 16384 && kHasAvx) return zero_bytes_streaming(reinterpret_cast<char*>(out), bytes);
#else
  (void)resident;
#endif
  if (bytes > 0) std::memset(static_cast<void*>(out), 0, bytes);
}

// --- portable rows (libm; fp64, or no AVX2) ---------------------------------------------------

template <typename A>
inline A capped(A x, const Consts<A>& k) {
  return k.capped ? k.cap * std::tanh(x / k.cap) : x;
}

template <typename T, typename A>
void forward_row_portable(const T* x, int64_t y, const A* w, const Consts<A>& k, A& loss, A& lse) {
  const A neg_inf = -std::numeric_limits<A>::infinity();
  A m = neg_inf;
  double s = 0, wz = 0;  // sums in fp64 also for fp32 logits (as the AVX2 rows' chunk sums)
  for (int64_t c = 0; c < k.vocab; ++c) {
    const A z = capped(load_as<A>(x + c), k);
    if (z > m) {
      s = s * std::exp(m - z) + 1;  // m = -inf: s is 0 and exp(-inf) = 0
      m = z;
    } else {
      s += std::exp(z - (m == neg_inf ? A(0) : m));  // never exp(-inf - -inf); NaN stays NaN
    }
    if (k.smoothing) wz += (w != nullptr ? w[c] : A(1)) * z;
  }
  lse = finish_lse<A>(static_cast<double>(m), s);
  loss = row_loss<A>(lse, capped(load_as<A>(x + y), k), w != nullptr ? w[y] : A(1), static_cast<A>(wz), k);
}

// out may be x (in place): each value is read before it is written, and the label's gradient is
// computed before the loop.
template <typename T, typename A>
void backward_row_portable(const T* x, T* out, int64_t y, const A* w, const Consts<A>& k, A lse, const RowGrad<A>& r) {
  auto grad = [&](A x_c, A w_c, bool target) {
    const A z = capped(x_c, k);
    A g = std::exp(z - lse) * r.prob - r.smooth * w_c;
    if (target) g = g - r.target;
    if (k.capped) {
      const A q = z / k.cap;
      g = g * (1 - q * q);
    }
    return g;
  };
  const A g_y = grad(load_as<A>(x + y), w != nullptr ? w[y] : A(1), true);
  for (int64_t c = 0; c < k.vocab; ++c) store_from<A>(out + c, grad(load_as<A>(x + c), w != nullptr ? w[c] : A(1), false));
  store_from<A>(out + y, g_y);
}

template <typename T, typename A>
void scale_row_portable(T* row, int64_t vocab, A scale) {
  for (int64_t c = 0; c < vocab; ++c) store_from<A>(row + c, load_as<A>(row + c) * scale);
}

// --- AVX2 rows ---------------------------------------------------------------------------------

#ifdef FASTMASK_SIMD_X86
constexpr int64_t kChunk = 1024;  // values staged per chunk: 4 KiB, in L1

// The first n (0 < n < 8) values; the other lanes are 0.
template <typename T>
FASTMASK_AVX2_INLINE __m256 load_partial(const T* p, int64_t n) {
  T tmp[8];
  std::memset(static_cast<void*>(tmp), 0, sizeof tmp);
  std::memcpy(static_cast<void*>(tmp), static_cast<const void*>(p), static_cast<size_t>(n) * sizeof(T));
  return load8(tmp);
}
template <typename T>
FASTMASK_AVX2_INLINE void store_partial(T* p, __m256 v, int64_t n) {
  T tmp[8];
  store8(tmp, v);
  std::memcpy(static_cast<void*>(p), static_cast<const void*>(tmp), static_cast<size_t>(n) * sizeof(T));
}

// tanh(u): Cephes' tanhf, an odd polynomial below 0.625 and 1 - 2 / (exp(2|u|) + 1) above.
FASTMASK_AVX2_INLINE __m256 tanh8(__m256 u) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 a = _mm256_andnot_ps(sign, u);
  const __m256 u2 = _mm256_mul_ps(u, u);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, u2, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, u2, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, u2, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, u2, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, u2), u, u);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp8(_mm256_add_ps(a, a));
  __m256 large = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  large = _mm256_or_ps(large, _mm256_and_ps(sign, u));
  return _mm256_blendv_ps(large, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

// z = cap * tanh(x / cap) and t = tanh(x / cap), or z = x.
template <bool Capped>
FASTMASK_AVX2_INLINE __m256 cap8(__m256 x, const Consts<float>& k, __m256& t) {
  if (!Capped) return x;
  t = tanh8(_mm256_mul_ps(x, _mm256_set1_ps(k.inv_cap)));
  return _mm256_mul_ps(_mm256_set1_ps(k.cap), t);
}

template <bool Capped>
FASTMASK_AVX2_INLINE float capped_value(float x, const Consts<float>& k, float& t) {
  __m256 tv = _mm256_setzero_ps();
  const float z = _mm256_cvtss_f32(cap8<Capped>(_mm256_set1_ps(x), k, tv));
  t = _mm256_cvtss_f32(tv);
  return z;
}

template <typename T, bool Capped, bool Smoothing, bool Weighted>
FASTMASK_AVX2 void forward_row_avx2(const T* x, int64_t y, const float* w, const Consts<float>& k, float& loss, float& lse) {
  constexpr bool kDirect = std::is_same<T, float>::value && !Capped;  // sum straight from the logits
  alignas(32) float staged[kDirect ? 8 : kChunk];
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const int64_t vocab = k.vocab;
  float m = -std::numeric_limits<float>::infinity();
  double s = 0, wz = 0;
  __m256 t;
  for (int64_t c0 = 0; c0 < vocab; c0 += kChunk) {
    const int64_t len = std::min(kChunk, vocab - c0), full = len & ~int64_t(7), rest = len - full;
    const T* xc = x + c0;
    // Pass 1: load (convert, cap, stage), the chunk's max, and sum w z for the smoothing term.
    __m256 mx0 = neg_inf, mx1 = neg_inf, wz0 = _mm256_setzero_ps(), wz1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= full; j += 16) {
      const __m256 z0 = cap8<Capped>(load8(xc + j), k, t);
      const __m256 z1 = cap8<Capped>(load8(xc + j + 8), k, t);
      if (!kDirect) {
        _mm256_store_ps(staged + j, z0);
        _mm256_store_ps(staged + j + 8, z1);
      }
      mx0 = _mm256_max_ps(z0, mx0);
      mx1 = _mm256_max_ps(z1, mx1);
      if (Smoothing) {
        wz0 = Weighted ? _mm256_fmadd_ps(_mm256_loadu_ps(w + c0 + j), z0, wz0) : _mm256_add_ps(wz0, z0);
        wz1 = Weighted ? _mm256_fmadd_ps(_mm256_loadu_ps(w + c0 + j + 8), z1, wz1) : _mm256_add_ps(wz1, z1);
      }
    }
    for (; j < full; j += 8) {
      const __m256 z0 = cap8<Capped>(load8(xc + j), k, t);
      if (!kDirect) _mm256_store_ps(staged + j, z0);
      mx0 = _mm256_max_ps(z0, mx0);
      if (Smoothing) wz0 = Weighted ? _mm256_fmadd_ps(_mm256_loadu_ps(w + c0 + j), z0, wz0) : _mm256_add_ps(wz0, z0);
    }
    __m256 tail = neg_inf;
    if (rest > 0) {
      const __m256 z0 = cap8<Capped>(load_partial(xc + full, rest), k, t);  // lanes past the row: cap(0) = 0
      if (Smoothing) wz0 = Weighted ? _mm256_fmadd_ps(load_partial(w + c0 + full, rest), z0, wz0) : _mm256_add_ps(wz0, z0);
      tail = _mm256_blendv_ps(neg_inf, z0, first_lanes(rest));
      mx0 = _mm256_max_ps(tail, mx0);
    }
    if (Smoothing) wz += static_cast<double>(hsum(_mm256_add_ps(wz0, wz1)));
    // Pass 2 (from L1): rescale the running sum to the new max, add this chunk's exponentials.
    const float chunk_max = hmax(_mm256_max_ps(mx0, mx1));
    if (chunk_max > m) {
      s *= std::exp(static_cast<double>(m) - static_cast<double>(chunk_max));  // m = -inf: s is 0
      m = chunk_max;
    }
    const __m256 shift = _mm256_set1_ps(m == -std::numeric_limits<float>::infinity() ? 0.0f : m);  // no -inf - -inf
    const float* zs = kDirect ? reinterpret_cast<const float*>(xc) : staged;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    j = 0;
    for (; j + 16 <= full; j += 16) {
      s0 = _mm256_add_ps(s0, exp8(_mm256_sub_ps(_mm256_loadu_ps(zs + j), shift)));
      s1 = _mm256_add_ps(s1, exp8(_mm256_sub_ps(_mm256_loadu_ps(zs + j + 8), shift)));
    }
    for (; j < full; j += 8) s0 = _mm256_add_ps(s0, exp8(_mm256_sub_ps(_mm256_loadu_ps(zs + j), shift)));
    if (rest > 0) s1 = _mm256_add_ps(s1, exp8(_mm256_sub_ps(tail, shift)));  // padding: exp(-inf) = 0
    s += static_cast<double>(hsum(_mm256_add_ps(s0, s1)));
  }
  lse = finish_lse<float>(static_cast<double>(m), s);
  float t_y;
  const float z_y = capped_value<Capped>(load_as<float>(x + y), k, t_y);
  loss = row_loss<float>(lse, z_y, Weighted ? w[y] : 1.0f, static_cast<float>(wz), k);
}

// The gradient of 8 values (before the label's own term).
struct GradConsts {
  __m256 prob, lse, smooth, one;
};

template <bool Capped, bool Smoothing, bool Weighted>
FASTMASK_AVX2_INLINE __m256 grad_vector(__m256 xv, __m256 wv, const Consts<float>& k, const GradConsts& c) {
  __m256 t = _mm256_setzero_ps();
  const __m256 z = cap8<Capped>(xv, k, t);
  const __m256 p = exp8(_mm256_sub_ps(z, c.lse));
  __m256 g = Smoothing ? _mm256_fmsub_ps(p, c.prob, Weighted ? _mm256_mul_ps(c.smooth, wv) : c.smooth) : _mm256_mul_ps(p, c.prob);
  if (Capped) g = _mm256_mul_ps(g, _mm256_fnmadd_ps(t, t, c.one));
  return g;
}

// out may be x (in place): each vector is read before it is written, and the label's gradient is
// computed before the loop and stored after it.
template <typename T, bool Capped, bool Smoothing, bool Weighted>
FASTMASK_AVX2 void backward_row_avx2(const T* x, T* out, int64_t y, const float* w, const Consts<float>& k, float lse,
                                     const RowGrad<float>& r) {
  const int64_t vocab = k.vocab;
  const __m256 one = _mm256_set1_ps(1.0f);
  const GradConsts g{_mm256_set1_ps(r.prob), _mm256_set1_ps(lse), _mm256_set1_ps(r.smooth), one};
  // The label's gradient, by the same vector code.
  float t_y;
  const float z_y = capped_value<Capped>(load_as<float>(x + y), k, t_y);
  const float p_y = _mm256_cvtss_f32(exp8(_mm256_set1_ps(z_y - lse)));
  float g_y = p_y * r.prob - r.smooth * (Weighted ? w[y] : 1.0f) - r.target;
  if (Capped) g_y *= 1 - t_y * t_y;

  const int64_t full = vocab & ~int64_t(7);
  int64_t c = 0;
  for (; c + 16 <= full; c += 16) {
    const __m256 g0 = grad_vector<Capped, Smoothing, Weighted>(load8(x + c), Weighted ? _mm256_loadu_ps(w + c) : one, k, g);
    const __m256 g1 = grad_vector<Capped, Smoothing, Weighted>(load8(x + c + 8), Weighted ? _mm256_loadu_ps(w + c + 8) : one, k, g);
    store8(out + c, g0);
    store8(out + c + 8, g1);
  }
  for (; c < full; c += 8) store8(out + c, grad_vector<Capped, Smoothing, Weighted>(load8(x + c), Weighted ? _mm256_loadu_ps(w + c) : one, k, g));
  if (c < vocab) {
    const int64_t rest = vocab - c;
    store_partial(out + c, grad_vector<Capped, Smoothing, Weighted>(load_partial(x + c, rest), Weighted ? load_partial(w + c, rest) : one, k, g), rest);
  }
  store_from<float>(out + y, g_y);
}

template <typename T>
FASTMASK_AVX2 void scale_row_avx2(T* row, int64_t vocab, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  const int64_t full = vocab & ~int64_t(7);
  int64_t c = 0;
  for (; c < full; c += 8) store8(row + c, _mm256_mul_ps(load8(row + c), s));
  if (c < vocab) store_partial(row + c, _mm256_mul_ps(load_partial(row + c, vocab - c), s), vocab - c);
}

FASTMASK_AVX2 void exp_avx2(const float* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, exp8(_mm256_loadu_ps(in + i)));
  if (i < n) store_partial(out + i, exp8(load_partial(in + i, n - i)), n - i);
}

template <typename From, typename To>
FASTMASK_AVX2 void convert_avx2(const From* in, To* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8(out + i, load8(in + i));
  if (i < n) store_partial(out + i, load_partial(in + i, n - i), n - i);
}

// Row kernels by their compile-time flags: index capped * 4 + smoothing * 2 + weighted.
template <typename T>
using ForwardRowAvx2 = void (*)(const T*, int64_t, const float*, const Consts<float>&, float&, float&);
template <typename T>
using BackwardRowAvx2 = void (*)(const T*, T*, int64_t, const float*, const Consts<float>&, float, const RowGrad<float>&);

template <typename T>
ForwardRowAvx2<T> forward_row_avx2_for(const Consts<float>& k, bool weighted) {
  static constexpr ForwardRowAvx2<T> table[8] = {
      forward_row_avx2<T, false, false, false>, forward_row_avx2<T, false, false, true>,
      forward_row_avx2<T, false, true, false>,  forward_row_avx2<T, false, true, true>,
      forward_row_avx2<T, true, false, false>,  forward_row_avx2<T, true, false, true>,
      forward_row_avx2<T, true, true, false>,   forward_row_avx2<T, true, true, true>,
  };
  return table[k.capped * 4 + k.smoothing * 2 + weighted];
}

template <typename T>
BackwardRowAvx2<T> backward_row_avx2_for(const Consts<float>& k, bool weighted) {
  static constexpr BackwardRowAvx2<T> table[8] = {
      backward_row_avx2<T, false, false, false>, backward_row_avx2<T, false, false, true>,
      backward_row_avx2<T, false, true, false>,  backward_row_avx2<T, false, true, true>,
      backward_row_avx2<T, true, false, false>,  backward_row_avx2<T, true, false, true>,
      backward_row_avx2<T, true, true, false>,   backward_row_avx2<T, true, true, true>,
  };
  return table[k.capped * 4 + k.smoothing * 2 + weighted];
}
#endif

std::atomic<bool> simd_enabled{true};

bool use_avx2() { return kHasAvx2 && simd_enabled.load(std::memory_order_relaxed); }

// --- the kernels, by dtype ---------------------------------------------------------------------

template <typename T, typename A>
void forward_impl(const CrossEntropyArgs& a, A* loss, A* lse) {
  const Consts<A> k = make_consts<A>(a);
  const A* w = static_cast<const A*>(a.weight);
  const T* logits = static_cast<const T*>(a.logits);
  auto run = [&](auto row_fn) {
    parallel_for(a.rows, a.threads, [&](int64_t i) {
      const int64_t y = label_at(a, i);
      if (y == a.ignore_index) {
        loss[i] = 0;
        lse[i] = 0;
        return;
      }
      row_fn(logits + i * a.logits_stride, y, w, k, loss[i], lse[i]);
    });
  };
#ifdef FASTMASK_SIMD_X86
  if constexpr (std::is_same<A, float>::value) {
    if (use_avx2()) return run(forward_row_avx2_for<T>(k, w != nullptr));
  }
#endif
  run(forward_row_portable<T, A>);
}

template <typename T, typename A>
void backward_impl(const CrossEntropyArgs& a, const A* lse, int64_t lse_stride, const A* grad_rows, int64_t grad_rows_stride,
                   const A* grad_lse, int64_t grad_lse_stride, T* grad, int64_t grad_stride, bool grad_zeroed) {
  const Consts<A> k = make_consts<A>(a);
  const A* w = static_cast<const A*>(a.weight);
  const T* logits = static_cast<const T*>(a.logits);
  auto run = [&](auto row_fn) {
    parallel_for(a.rows, a.threads, [&](int64_t i) {
      const int64_t y = label_at(a, i);
      T* out = grad + i * grad_stride;
      if (y == a.ignore_index) {
        if (!grad_zeroed) zero_row(out, a.vocab, false);
        return;
      }
      const A l = lse[i * lse_stride];
      const A g_lse = grad_lse != nullptr ? grad_lse[i * grad_lse_stride] : A(0);
      row_fn(logits + i * a.logits_stride, out, y, w, k, l,
             row_grad_backward<A>(w != nullptr ? w[y] : A(1), l, grad_rows[i * grad_rows_stride], g_lse, k));
    });
  };
#ifdef FASTMASK_SIMD_X86
  if constexpr (std::is_same<A, float>::value) {
    if (use_avx2()) return run(backward_row_avx2_for<T>(k, w != nullptr));
  }
#endif
  run(backward_row_portable<T, A>);
}

template <typename T, typename A>
void forward_inplace_impl(const CrossEntropyArgs& a, A scale_ce, A scale_z, A* loss, A* lse) {
  const Consts<A> k = make_consts<A>(a);
  const A* w = static_cast<const A*>(a.weight);
  T* logits = static_cast<T*>(const_cast<void*>(a.logits));
  auto run = [&](auto forward_row, auto backward_row) {
    parallel_for(a.rows, a.threads, [&](int64_t i) {
      const int64_t y = label_at(a, i);
      T* row = logits + i * a.logits_stride;
      if (y == a.ignore_index) {
        loss[i] = 0;
        lse[i] = 0;
        return zero_row(row, a.vocab, true);
      }
      forward_row(row, y, w, k, loss[i], lse[i]);
      backward_row(row, row, y, w, k, lse[i], row_grad_inplace<A>(w != nullptr ? w[y] : A(1), lse[i], scale_ce, scale_z, k));
    });
  };
#ifdef FASTMASK_SIMD_X86
  if constexpr (std::is_same<A, float>::value) {
    if (use_avx2()) return run(forward_row_avx2_for<T>(k, w != nullptr), backward_row_avx2_for<T>(k, w != nullptr));
  }
#endif
  run(forward_row_portable<T, A>, backward_row_portable<T, A>);
}

template <typename T, typename A>
void scale_grad_impl(T* grad, int64_t rows, int64_t vocab, int64_t grad_stride, const A* scale, int64_t scale_stride, int threads) {
  if (scale_stride == 0 && scale[0] == A(1)) return;  // the usual upstream gradient: nothing to do
  parallel_for(rows, threads, [&](int64_t i) {
    const A s = scale[i * scale_stride];
    if (s == A(1)) return;
    T* row = grad + i * grad_stride;
#ifdef FASTMASK_SIMD_X86
    if constexpr (std::is_same<A, float>::value) {
      if (use_avx2()) return scale_row_avx2(row, vocab, s);
    }
#endif
    scale_row_portable<T, A>(row, vocab, s);
  });
}

// Each labelled row's argmax, as torch.argmax: the first largest value, a NaN counting as the largest
// (the first NaN). Ignored rows are not read and get ignore_index. A plain compare loop: the loss
// kernels' passes are the expensive ones, this reads the labelled rows once more.
template <typename T>
void argmax_impl(const CrossEntropyArgs& a, int64_t* out) {
  const T* logits = static_cast<const T*>(a.logits);
  parallel_for(a.rows, a.threads, [&](int64_t i) {
    const int64_t y = label_at(a, i);
    if (y == a.ignore_index) {
      out[i] = a.ignore_index;
      return;
    }
    const T* x = logits + i * a.logits_stride;
    double best = load_as<double>(x);
    int64_t index = 0;
    for (int64_t c = 1; c < a.vocab && !std::isnan(best); ++c) {
      const double v = load_as<double>(x + c);
      if (v > best || std::isnan(v)) {
        best = v;
        index = c;
      }
    }
    out[i] = index;
  });
}

// Calls f with a null pointer of the storage type of a float dtype code.
template <typename F>
void with_float_type(int dtype, const F& f) {
  switch (dtype) {
    case kFloat32: return f(static_cast<float*>(nullptr));
    case kBFloat16: return f(static_cast<BFloat16*>(nullptr));
    case kFloat16: return f(static_cast<Float16*>(nullptr));
    case kFloat64: return f(static_cast<double*>(nullptr));
    default: fail("fastmask: unsupported floating dtype code ", dtype);
  }
}

template <typename T>
using Acc = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

}  // namespace

void cross_entropy_forward(const CrossEntropyArgs& args, void* loss, void* lse) {
  check_labels(args);
  with_float_type(args.logits_dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    forward_impl<T, Acc<T>>(args, static_cast<Acc<T>*>(loss), static_cast<Acc<T>*>(lse));
  });
}

void cross_entropy_backward(const CrossEntropyArgs& args, const void* lse, int64_t lse_stride, const void* grad_rows,
                            int64_t grad_rows_stride, const void* grad_lse, int64_t grad_lse_stride, void* grad,
                            int64_t grad_stride, bool grad_zeroed) {
  check_labels(args);
  with_float_type(args.logits_dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = Acc<T>;
    backward_impl<T, A>(args, static_cast<const A*>(lse), lse_stride, static_cast<const A*>(grad_rows), grad_rows_stride,
                        static_cast<const A*>(grad_lse), grad_lse_stride, static_cast<T*>(grad), grad_stride, grad_zeroed);
  });
}

void cross_entropy_forward_inplace(const CrossEntropyArgs& args, const void* grad_scale, void* loss, void* lse) {
  check_labels(args);  // before anything is written
  with_float_type(args.logits_dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = Acc<T>;
    const A* scale = static_cast<const A*>(grad_scale);
    forward_inplace_impl<T, A>(args, scale[0], scale[1], static_cast<A*>(loss), static_cast<A*>(lse));
  });
}

void cross_entropy_scale_grad(void* grad, int dtype, int64_t rows, int64_t vocab, int64_t grad_stride, const void* scale,
                              int64_t scale_stride, int threads) {
  with_float_type(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    scale_grad_impl<T, Acc<T>>(static_cast<T*>(grad), rows, vocab, grad_stride, static_cast<const Acc<T>*>(scale),
                               scale_stride, threads);
  });
}

void cross_entropy_argmax(const CrossEntropyArgs& args, void* predicted) {
  check_labels(args);
  with_float_type(args.logits_dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    argmax_impl<T>(args, static_cast<int64_t*>(predicted));
  });
}

bool cross_entropy_simd(bool enabled) {
  simd_enabled.store(enabled, std::memory_order_relaxed);
  return use_avx2();
}

void cross_entropy_exp(const float* in, float* out, int64_t n, bool simd) {
#ifdef FASTMASK_SIMD_X86
  if (simd && kHasAvx2) return exp_avx2(in, out, n);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = std::exp(in[i]);
}

void cross_entropy_convert(const void* in, int in_dtype, void* out, int out_dtype, int64_t n, bool simd) {
  with_float_type(in_dtype, [&](auto* in_tag) {
    using From = std::remove_pointer_t<decltype(in_tag)>;
    with_float_type(out_dtype, [&](auto* out_tag) {
      using To = std::remove_pointer_t<decltype(out_tag)>;
      const From* src = static_cast<const From*>(in);
      To* dst = static_cast<To*>(out);
#ifdef FASTMASK_SIMD_X86
      if constexpr (!std::is_same<From, double>::value && !std::is_same<To, double>::value) {
        if (simd && kHasAvx2) return convert_avx2(src, dst, n);
      }
#endif
      for (int64_t i = 0; i < n; ++i) store_from<Acc<From>>(dst + i, load_as<Acc<From>>(src + i));
    });
  });
}

}  // namespace fastmask
