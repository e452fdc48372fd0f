// Distillation of one chunk of rows on the CPU: the specification is fastmask/reference/distillation.py.
//
// Rows run in parallel (parallel_for). A kept row is read three times from cache (a row of both
// logits at V = 30522 in fp32 is 240 KiB, in L2): its two maxima; then the sums of exp(t/T - max),
// exp(s/T - max) (and exp(s - max) for the hard loss at T != 1) with the divergence's cross term,
// which give both log-sum-exps and KL / reverse KL at once; then the gradient, written over the
// student row. JSD needs log m, m = beta p + (1 - beta) q, from both normalized distributions: one
// more pass between the two. An ignored row costs a zero-fill.
//
// Two implementations of a row: AVX2 + FMA + F16C (chosen at run time) for fp32, bf16 and fp16,
// accumulating in fp32 lanes and fp64 per block; portable scalar code with libm for fp64 and for
// machines without AVX2.
#include "distillation.h"

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

// The constants of one call, in the accumulation type A.
template <typename A>
struct Consts {
  int64_t vocab;
  A inv_t, t, t2;        // 1 / T, T, T^2
  A beta, one_minus_beta, log_beta, log_one_minus_beta;
  A hard_weight;
  int divergence;
  bool unit_t, hard;     // T == 1 (the hard loss reuses the student's lse), hard_weight > 0
};

template <typename A>
Consts<A> make_consts(const DistillArgs& a) {
  Consts<A> k;
  k.vocab = a.vocab;
  k.t = static_cast<A>(a.temperature);
  k.inv_t = static_cast<A>(1 / a.temperature);
  k.t2 = static_cast<A>(a.temperature * a.temperature);
  k.beta = static_cast<A>(a.beta);
  k.one_minus_beta = static_cast<A>(1 - a.beta);
  k.log_beta = a.divergence == kJSD ? static_cast<A>(std::log(a.beta)) : A(0);
  k.log_one_minus_beta = a.divergence == kJSD ? static_cast<A>(std::log1p(-a.beta)) : A(0);
  k.hard_weight = static_cast<A>(a.hard_weight);
  k.divergence = a.divergence;
  k.unit_t = a.temperature == 1.0;
  k.hard = a.hard_weight > 0;
  return k;
}

// One row's statistics after the sums: log-sum-exps of a = t/T (teacher), b = s/T (student) and s.
template <typename A>
struct RowStats {
  A lse_a, lse_b, lse_s;
  A d;  // the divergence (before T^2)
  A g;  // JSD: (1 - beta) sum_c q_c (lq_c - lm_c); 0 otherwise
};

template <typename A>
inline A log_add_exp(A x, A y) {
  const A m = std::max(x, y);
  return m + std::log1p(std::exp(-std::fabs(x - y)));
}

// --- portable rows (libm; fp64, or no AVX2) ---------------------------------------------------

template <typename T, typename A>
RowStats<A> stats_portable(const T* s, const T* t, const Consts<A>& k) {
  A ms = -std::numeric_limits<A>::infinity(), mt = ms;
  for (int64_t c = 0; c < k.vocab; ++c) {
    ms = std::max(ms, load_as<A>(s + c));
    mt = std::max(mt, load_as<A>(t + c));
  }
  const A ma = mt * k.inv_t, mb = ms * k.inv_t;
  double sa = 0, sb = 0, ss = 0, w = 0;
  for (int64_t c = 0; c < k.vocab; ++c) {
    const A sv = load_as<A>(s + c), a = load_as<A>(t + c) * k.inv_t, b = sv * k.inv_t;
    const A ea = std::exp(a - ma), eb = std::exp(b - mb);
    sa += ea;
    sb += eb;
    if (k.divergence == kKL) w += ea * (a - b);
    if (k.divergence == kReverseKL) w += eb * (b - a);
    if (k.hard && !k.unit_t) ss += std::exp(sv - ms);
  }
  RowStats<A> r;
  r.lse_a = static_cast<A>(ma + std::log(sa));
  r.lse_b = static_cast<A>(mb + std::log(sb));
  r.lse_s = k.unit_t ? r.lse_b : static_cast<A>(ms + std::log(ss));
  r.g = 0;
  if (k.divergence == kKL) r.d = static_cast<A>(w / sa) - r.lse_a + r.lse_b;
  if (k.divergence == kReverseKL) r.d = static_cast<A>(w / sb) - r.lse_b + r.lse_a;
  if (k.divergence == kJSD) {
    double dp = 0, dq = 0;
    for (int64_t c = 0; c < k.vocab; ++c) {
      const A la = load_as<A>(t + c) * k.inv_t - r.lse_a, lb = load_as<A>(s + c) * k.inv_t - r.lse_b;
      const A lm = log_add_exp(la + k.log_beta, lb + k.log_one_minus_beta);
      dp += std::exp(la) * (la - lm);
      dq += std::exp(lb) * (lb - lm);
    }
    r.d = static_cast<A>(k.beta * dp + k.one_minus_beta * dq);
    r.g = static_cast<A>(k.one_minus_beta * dq);
  }
  return r;
}

// d(T^2 D + hard_weight ce)/ds_c times the row's scale, without the hard loss' -1 at the label.
template <typename A>
inline A grad_value(A sv, A tv, const RowStats<A>& r, const Consts<A>& k, A c_div, A c_hard) {
  const A la = tv * k.inv_t - r.lse_a, lb = sv * k.inv_t - r.lse_b;
  const A q = std::exp(lb);
  A dz;
  if (k.divergence == kKL) {
    dz = q - std::exp(la);
  } else if (k.divergence == kReverseKL) {
    dz = q * (lb - la - r.d);
  } else {
    const A lm = log_add_exp(la + k.log_beta, lb + k.log_one_minus_beta);
    dz = q * (k.one_minus_beta * (lb - lm) - r.g);
  }
  A g = c_div * dz;
  if (k.hard) g += c_hard * (k.unit_t ? q : std::exp(sv - r.lse_s));
  return g;
}

template <typename T, typename A>
void grad_portable(T* s, const T* t, const RowStats<A>& r, const Consts<A>& k, A c_div, A c_hard) {
  for (int64_t c = 0; c < k.vocab; ++c) store_from<A>(s + c, grad_value(load_as<A>(s + c), load_as<A>(t + c), r, k, c_div, c_hard));
}

// --- AVX2 rows ---------------------------------------------------------------------------------

#ifdef FASTMASK_SIMD_X86
// The first n (0 < n < 8) values; the other lanes read as `fill`.
template <typename T>
FASTMASK_AVX2_INLINE __m256 load_partial(const T* p, int64_t n, float fill) {
  float tmp[8];
  for (int64_t j = 0; j < 8; ++j) tmp[j] = j < n ? load_as<float>(p + j) : fill;
  return _mm256_loadu_ps(tmp);
}
template <typename T>
FASTMASK_AVX2_INLINE void store_partial(T* p, __m256 v, int64_t n) {
  float tmp[8];
  _mm256_storeu_ps(tmp, v);
  for (int64_t j = 0; j < n; ++j) store_from<float>(p + j, tmp[j]);
}

// log(x) for x in [1, 2] (all JSD needs: log1p(exp(-|d|))): Cephes' logf polynomial around 1 or
// sqrt(2)/2 after one halving.
FASTMASK_AVX2_INLINE __m256 log8_1to2(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  // x in [1, 2]: above sqrt(2) use x / 2 (in [0.707, 1]) and add ln 2.
  const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(1.41421356237f), _CMP_GT_OQ);
  const __m256 m = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(0.5f)), big);
  const __m256 e = _mm256_and_ps(big, _mm256_set1_ps(0.693147180559945f));
  const __m256 f = _mm256_sub_ps(m, one);
  const __m256 z = _mm256_mul_ps(f, f);
  __m256 p = _mm256_set1_ps(7.0376836292e-2f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.1514610310e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.1676998740e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.2420140846e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.4249322787e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.6668057665e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.0000714765e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-2.4999993993e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(3.3333331174e-1f));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f), z);
  y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
  return _mm256_add_ps(_mm256_add_ps(f, y), e);
}

// log(exp(x) + exp(y)).
FASTMASK_AVX2_INLINE __m256 log_add_exp8(__m256 x, __m256 y) {
  const __m256 m = _mm256_max_ps(x, y);
  const __m256 d = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(x, y));
  return _mm256_add_ps(m, log8_1to2(_mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), d)))));
}

constexpr int64_t kBlock = 1024;  // values summed in fp32 lanes before the fp64 row sums

// Values j..j+7 of a row of n; past its end, lanes read as `fill`.
template <typename T>
FASTMASK_AVX2_INLINE __m256 load_at(const T* p, int64_t j, int64_t n, float fill) {
  return j + 8 <= n ? load8(p + j) : load_partial(p + j, n - j, fill);
}
// All ones in the lanes of values j..j+7 that lie inside a row of n.
FASTMASK_AVX2_INLINE __m256 lanes_at(int64_t j, int64_t n) {
  return j + 8 <= n ? _mm256_castsi256_ps(_mm256_set1_epi32(-1)) : first_lanes(n - j);
}

template <typename T>
FASTMASK_AVX2 RowStats<float> stats_avx2(const T* s, const T* t, const Consts<float>& k) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  __m256 vms = _mm256_set1_ps(neg_inf), vmt = vms;
  for (int64_t j = 0; j < k.vocab; j += 8) {
    vms = _mm256_max_ps(vms, load_at(s, j, k.vocab, neg_inf));
    vmt = _mm256_max_ps(vmt, load_at(t, j, k.vocab, neg_inf));
  }
  const float ms = hmax(vms), mt = hmax(vmt);
  const __m256 inv_t = _mm256_set1_ps(k.inv_t), ma = _mm256_set1_ps(mt * k.inv_t), mb = _mm256_set1_ps(ms * k.inv_t);
  const __m256 vms1 = _mm256_set1_ps(ms);
  const bool kl = k.divergence == kKL, rkl = k.divergence == kReverseKL, hard_sum = k.hard && !k.unit_t;
  double sa = 0, sb = 0, ss = 0, w = 0;
  __m256 vsa = _mm256_setzero_ps(), vsb = vsa, vss = vsa, vw = vsa;
  for (int64_t j = 0; j < k.vocab; j += 8) {
    const __m256 sv = load_at(s, j, k.vocab, 0.0f), tv = load_at(t, j, k.vocab, 0.0f), lanes = lanes_at(j, k.vocab);
    const __m256 a = _mm256_mul_ps(tv, inv_t), b = _mm256_mul_ps(sv, inv_t);
    const __m256 ea = _mm256_and_ps(lanes, exp8(_mm256_sub_ps(a, ma)));
    const __m256 eb = _mm256_and_ps(lanes, exp8(_mm256_sub_ps(b, mb)));
    vsa = _mm256_add_ps(vsa, ea);
    vsb = _mm256_add_ps(vsb, eb);
    if (kl) vw = _mm256_fmadd_ps(ea, _mm256_sub_ps(a, b), vw);
    if (rkl) vw = _mm256_fmadd_ps(eb, _mm256_sub_ps(b, a), vw);
    if (hard_sum) vss = _mm256_add_ps(vss, _mm256_and_ps(lanes, exp8(_mm256_sub_ps(sv, vms1))));
    if ((j + 8) % kBlock == 0 || j + 8 >= k.vocab) {
      sa += hsum(vsa), sb += hsum(vsb), ss += hsum(vss), w += hsum(vw);
      vsa = vsb = vss = vw = _mm256_setzero_ps();
    }
  }
  RowStats<float> r;
  r.lse_a = static_cast<float>(mt * static_cast<double>(k.inv_t) + std::log(sa));
  r.lse_b = static_cast<float>(ms * static_cast<double>(k.inv_t) + std::log(sb));
  r.lse_s = k.unit_t ? r.lse_b : static_cast<float>(ms + std::log(ss));
  r.g = 0;
  if (kl) r.d = static_cast<float>(w / sa - r.lse_a + r.lse_b);
  if (rkl) r.d = static_cast<float>(w / sb - r.lse_b + r.lse_a);
  if (k.divergence == kJSD) {
    const __m256 lse_a = _mm256_set1_ps(r.lse_a), lse_b = _mm256_set1_ps(r.lse_b);
    const __m256 log_beta = _mm256_set1_ps(k.log_beta), log_rest = _mm256_set1_ps(k.log_one_minus_beta);
    double dp = 0, dq = 0;
    __m256 vdp = _mm256_setzero_ps(), vdq = vdp;
    for (int64_t j = 0; j < k.vocab; j += 8) {
      const __m256 sv = load_at(s, j, k.vocab, 0.0f), tv = load_at(t, j, k.vocab, 0.0f), lanes = lanes_at(j, k.vocab);
      const __m256 la = _mm256_fmsub_ps(tv, inv_t, lse_a), lb = _mm256_fmsub_ps(sv, inv_t, lse_b);
      const __m256 lm = log_add_exp8(_mm256_add_ps(la, log_beta), _mm256_add_ps(lb, log_rest));
      vdp = _mm256_fmadd_ps(_mm256_and_ps(lanes, exp8(la)), _mm256_sub_ps(la, lm), vdp);
      vdq = _mm256_fmadd_ps(_mm256_and_ps(lanes, exp8(lb)), _mm256_sub_ps(lb, lm), vdq);
      if ((j + 8) % kBlock == 0 || j + 8 >= k.vocab) {
        dp += hsum(vdp), dq += hsum(vdq);
        vdp = vdq = _mm256_setzero_ps();
      }
    }
    r.d = static_cast<float>(k.beta * dp + k.one_minus_beta * dq);
    r.g = static_cast<float>(k.one_minus_beta * dq);
  }
  return r;
}

template <typename T>
FASTMASK_AVX2 void grad_avx2(T* s, const T* t, const RowStats<float>& r, const Consts<float>& k, float c_div, float c_hard) {
  const __m256 inv_t = _mm256_set1_ps(k.inv_t), lse_a = _mm256_set1_ps(r.lse_a), lse_b = _mm256_set1_ps(r.lse_b);
  const __m256 lse_s = _mm256_set1_ps(r.lse_s), d = _mm256_set1_ps(r.d), g = _mm256_set1_ps(r.g);
  const __m256 vc_div = _mm256_set1_ps(c_div), vc_hard = _mm256_set1_ps(c_hard);
  const __m256 log_beta = _mm256_set1_ps(k.log_beta), log_rest = _mm256_set1_ps(k.log_one_minus_beta);
  const __m256 rest = _mm256_set1_ps(k.one_minus_beta);
  const bool separate_hard = k.hard && !k.unit_t;
  for (int64_t j = 0; j < k.vocab; j += 8) {
    const __m256 sv = load_at(s, j, k.vocab, 0.0f), tv = load_at(t, j, k.vocab, 0.0f);
    const __m256 la = _mm256_fmsub_ps(tv, inv_t, lse_a), lb = _mm256_fmsub_ps(sv, inv_t, lse_b);
    const __m256 q = exp8(lb);
    __m256 dz;
    if (k.divergence == kKL) {
      dz = _mm256_sub_ps(q, exp8(la));
    } else if (k.divergence == kReverseKL) {
      dz = _mm256_mul_ps(q, _mm256_sub_ps(_mm256_sub_ps(lb, la), d));
    } else {
      const __m256 lm = log_add_exp8(_mm256_add_ps(la, log_beta), _mm256_add_ps(lb, log_rest));
      dz = _mm256_mul_ps(q, _mm256_fmsub_ps(rest, _mm256_sub_ps(lb, lm), g));
    }
    __m256 out = _mm256_mul_ps(vc_div, dz);
    if (separate_hard) out = _mm256_fmadd_ps(vc_hard, exp8(_mm256_sub_ps(sv, lse_s)), out);
    else if (k.hard) out = _mm256_fmadd_ps(vc_hard, q, out);
    if (j + 8 <= k.vocab) store8(s + j, out);
    else store_partial(s + j, out, k.vocab - j);
  }
}
#endif

std::atomic<bool> g_simd{true};

template <typename T, typename A>
void run(const DistillArgs& a, A* div, A* ce) {
  const Consts<A> k = make_consts<A>(a);
  T* student = static_cast<T*>(a.student);
  const T* teacher = static_cast<const T*>(a.teacher);
  const A* grad_scale = static_cast<const A*>(a.grad_scale);
#ifdef FASTMASK_SIMD_X86
  constexpr bool kFloatLanes = std::is_same<A, float>::value;
  const bool simd = kFloatLanes && kHasAvx2 && g_simd.load();
#endif
  parallel_for(a.rows, a.threads, [&](int64_t i) {
    T* s = student + i * a.student_stride;
    const T* t = teacher + i * a.teacher_stride;
    const int64_t y = load_int(a.labels, a.labels_dtype, i, a.labels_stride);
    if (y == a.ignore_index || y < 0 || y >= a.vocab) {
      div[i] = 0;
      ce[i] = 0;
      if (a.write_grad) std::memset(static_cast<void*>(s), 0, static_cast<size_t>(a.vocab) * sizeof(T));
      return;
    }
    RowStats<A> r;
#ifdef FASTMASK_SIMD_X86
    if constexpr (kFloatLanes) {
      r = simd ? stats_avx2(s, t, k) : stats_portable<T, A>(s, t, k);
    } else {
      r = stats_portable<T, A>(s, t, k);
    }
#else
    r = stats_portable<T, A>(s, t, k);
#endif
    const A s_y = load_as<A>(s + y);
    div[i] = k.t2 * r.d;
    ce[i] = k.hard ? r.lse_s - s_y : A(0);  // only computed where it is used
    if (!a.write_grad) return;
    const A scale = grad_scale[i * a.grad_scale_stride];
    const A c_div = scale * k.t, c_hard = scale * k.hard_weight;
    // The label's value, before the row is overwritten: its gradient also carries the hard loss' -1.
    const A g_y = grad_value(s_y, load_as<A>(t + y), r, k, c_div, c_hard) - c_hard;
#ifdef FASTMASK_SIMD_X86
    if constexpr (kFloatLanes) {
      if (simd) grad_avx2(s, t, r, k, c_div, c_hard);
      else grad_portable<T, A>(s, t, r, k, c_div, c_hard);
    } else {
      grad_portable<T, A>(s, t, r, k, c_div, c_hard);
    }
#else
    grad_portable<T, A>(s, t, r, k, c_div, c_hard);
#endif
    store_from<A>(s + y, g_y);
  });
}

}  // namespace

void distill_chunk(const DistillArgs& a, void* div, void* ce) {
  if (a.labels_dtype != kInt32 && a.labels_dtype != kInt64) fail("labels: expected int32 or int64 (dtype code ", a.labels_dtype, ")");
  if (!(a.temperature > 0)) fail("temperature: expected a number > 0, got ", a.temperature);
  if (a.divergence == kJSD && !(a.beta > 0 && a.beta < 1)) fail("jsd_beta: the JSD kernel takes 0 < beta < 1, got ", a.beta);
  if (a.divergence < kKL || a.divergence > kJSD) fail("divergence: unknown code ", a.divergence);
  if (a.rows == 0) return;
  if (a.vocab <= 0) fail("vocab: expected at least one class, got ", a.vocab);
  switch (a.dtype) {
    case kFloat32: return run<float, float>(a, static_cast<float*>(div), static_cast<float*>(ce));
    case kBFloat16: return run<BFloat16, float>(a, static_cast<float*>(div), static_cast<float*>(ce));
    case kFloat16: return run<Float16, float>(a, static_cast<float*>(div), static_cast<float*>(ce));
    case kFloat64: return run<double, double>(a, static_cast<double*>(div), static_cast<double*>(ce));
    default: fail("logits: unsupported dtype code ", a.dtype);
  }
}

bool distillation_simd(bool enabled) {
#ifdef FASTMASK_SIMD_X86
  g_simd.store(enabled);
  return enabled && kHasAvx2;
#else
  (void)enabled;
  return false;
#endif
}

}  // namespace fastmask
