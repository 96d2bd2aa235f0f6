// First-order statistics, gradients and image-quality measures.
// Included by csrc/kernels/target.cpp after simd.hpp and common.hpp.
//
// summary_kernel: moments, equal-width histogram, quantiles, median absolute deviation and
// robust mean absolute deviation of the values selected by an optional uint8 mask, with
// the exact semantics of NumPy on the float64 copy of the selected values v:
//
//   hist     numpy.histogram(v, bins, range=(v.min(), v.max()))   (integer counts, exact)
//   qout[i]  numpy.percentile(v, 100 * q[i])  (method "linear")    (bit-identical)
//   mad      numpy.median(numpy.abs(v - numpy.median(v)))          (exact on the counting
//            path; on the radix path the deviations are rounded to float32, so the result
//            is within 1 float32 ulp of NumPy's)
//   rmad     mean |w - mean(w)| over w = v[(v >= Q(lo)) & (v <= Q(hi))] (PyRadiomics'
//            robust mean absolute deviation with lo = 0.1, hi = 0.9)
//
// Order statistics take one of two exact paths, both O(n):
//   * counting: every selected value is an integer and max - min < 65536 (every uint8 and
//     uint16 image): one pass counts the values; moments, histogram, quantiles and both
//     deviations then come from the counts;
//   * radix: the float32 bit pattern is mapped (SIMD) to an order-preserving uint32 key;
//     the keys are histogrammed 16 + 8 + 8 bits at a time, each level over the keys of
//     the buckets that hold a wanted rank only (radix_select); the k-th key is read off
//     the cumulative counts.
// The moment passes run on SIMD double lanes (native width, vdn); histogram and radix
// scatters are scalar.
//
// gradient_kernel: Sobel gradient, magnitude and a magnitude-weighted orientation
// histogram.  sharpness_kernel: Laplacian variance, Tenengrad and blur-effect sums.
#pragma once

namespace {

constexpr int kStatsMaxRanks = 2 * medimg::kStatsMaxQuantiles + 8;

// ---- small helpers ----------------------------------------------------------------------

// Order-preserving map float -> uint32 (negative floats reversed below the positive ones).
static inline uint32_t stats_key(float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static inline float stats_unkey(uint32_t k) {
  const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float x;
  __builtin_memcpy(&x, &u, sizeof x);
  return x;
}

static inline void zero_u32(uint32_t* p, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; ++i) p[i] = 0u;
}

// Lanes 0, 1, 2, ... as int32.
static inline simd::vi stats_iota() {
  int32_t t[simd::kLanes];
  for (int l = 0; l < simd::kLanes; ++l) t[l] = l;
  simd::vi v;
  __builtin_memcpy(&v, t, sizeof v);
  return v;
}

// True if any lane of the comparison mask v is set.
static inline bool any_lane(simd::vi v) {
#if defined(MEDIMG_TARGET_AVX512)
  return _mm512_test_epi32_mask((__m512i)v, (__m512i)v) != 0;
#elif defined(MEDIMG_TARGET_AVX2)
  return !_mm256_testz_si256((__m256i)v, (__m256i)v);
#elif defined(MEDIMG_TARGET_SSE4)
  return !_mm_testz_si128((__m128i)v, (__m128i)v);
#elif defined(MEDIMG_TARGET_NEON)
  return vmaxvq_u32(vreinterpretq_u32_s32((int32x4_t)v)) != 0;
#else
  return v != 0;
#endif
}

// Calls f(x, m) for every block of kLanes values: x the values, m non-zero in the lanes
// that are selected (mask[i] != 0, or every lane without a mask).  The last partial block
// is copied into a zero-padded local block whose extra lanes are not selected.
template <bool kMasked, typename F>
static inline void for_each_block(const float* in, const uint8_t* mask, ptrdiff_t n, F f) {
  using namespace simd;
  const vi all = vi{} + 1;
  ptrdiff_t i = 0;
  for (; i + kLanes <= n; i += kLanes) f(load(in + i), kMasked ? load_u8(mask + i) : all);
  if (i < n) {
    float xt[kLanes];
    uint8_t mt[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      const bool inside = i + l < n;
      xt[l] = inside ? in[i + l] : 0.0f;
      mt[l] = (inside && (!kMasked || mask[i + l] != 0)) ? 1 : 0;
    }
    f(load(xt), load_u8(mt));
  }
}

// numpy.histogram's equal-width binning: the guess floor((v - first) / (last - first) *
// bins), then the same one-step corrections against the edges i * step + first
// (numpy.linspace) that NumPy applies, so the bin is NumPy's for every value.
struct HistSpec {
  double first, last, denom, step;
  int bins;
};
static inline HistSpec hist_spec(double mn, double mx, int bins) {
  HistSpec h;
  h.first = mn;
  h.last = mx;
  if (h.first == h.last) {
    h.first -= 0.5;
    h.last += 0.5;
  }
  h.denom = h.last - h.first;
  h.step = h.denom / static_cast<double>(bins);
  h.bins = bins;
  return h;
}
static inline double hist_edge(const HistSpec& h, int i) {
  return i == h.bins ? h.last : static_cast<double>(i) * h.step + h.first;
}
static inline int hist_bin(const HistSpec& h, double v) {
  const double f = ((v - h.first) / h.denom) * static_cast<double>(h.bins);
  int i = static_cast<int>(f);
  if (i >= h.bins) i = h.bins - 1;
  if (i < 0) i = 0;
  if (v < hist_edge(h, i)) {
    --i;
  } else if (i != h.bins - 1 && v >= hist_edge(h, i + 1)) {
    ++i;
  }
  return i;
}

// numpy's _lerp: a + (b - a) t, or b - (b - a)(1 - t) when t >= 0.5.
static inline double np_lerp(double a, double b, double t) {
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

// Ranks of numpy.percentile(q) among n sorted values: previous / next index and gamma.
static inline void percentile_ranks(double n, double q, int64_t* lo, int64_t* hi, double* gamma) {
  const double v = (n - 1.0) * q;
  if (v >= n - 1.0) {
    *lo = *hi = static_cast<int64_t>(n) - 1;
    *gamma = 0.0;
    return;
  }
  if (v < 0.0) {
    *lo = *hi = 0;
    *gamma = 0.0;
    return;
  }
  const double f = __builtin_floor(v);
  *lo = static_cast<int64_t>(f);
  *hi = *lo + 1;
  *gamma = v - f;
}

// A sorted set of ranks (order-statistic indices) and the values found for them.
struct RankSet {
  int64_t rank[kStatsMaxRanks];
  double value[kStatsMaxRanks];
  int n = 0;
  void add(int64_t r) {
    for (int i = 0; i < n; ++i)
      if (rank[i] == r) return;
    int j = n++;
    while (j > 0 && rank[j - 1] > r) {
      rank[j] = rank[j - 1];
      --j;
    }
    rank[j] = r;
  }
  double get(int64_t r) const {
    for (int i = 0; i < n; ++i)
      if (rank[i] == r) return value[i];
    return 0.0;
  }
};

// ---- pass 1: count, sum, min, max, integrality, threshold counts -----------------------

struct Pass1 {
  double count, sum, min, max, below, above;
  bool integral;  // every selected value is an integer with |v| <= 2^24
};

template <bool kMasked>
static void stats_pass1(const float* in, const uint8_t* mask, ptrdiff_t n, float below, float above,
                        Pass1* r) {
  using namespace simd;
  const vi one = vi{} + 1, zero = vi{};
  const vf fzero = set1(0.0f), pinf = set1(__builtin_huge_valf()), ninf = -pinf;
  const vf big = set1(16777216.0f);  // 2^24
  vi cnt = zero, nonint = zero, nb = zero, na = zero;
  vdn sum = set1dn(0.0);
  vf mn = pinf, mx = ninf;
  for_each_block<kMasked>(in, mask, n, [&](vf x, vi m) {
    const vi on = m != zero;
    cnt += on ? one : zero;
    const vf xs = on ? x : fzero;
    sum += f2d_lo(xs);
    if (kLanes > 1) sum += f2d_hi(xs);
    mn = vmin(mn, on ? x : pinf);
    mx = vmax(mx, on ? x : ninf);
    const vf xc = clamp(x, -big, big);
    const vi frac = (xc != vfloor(xc)) | (xc != x);
    nonint += (on & frac) ? one : zero;
    nb += (on & (x <= below)) ? one : zero;
    na += (on & (x >= above)) ? one : zero;
  });
  double c = 0.0, bl = 0.0, ab = 0.0, bad = 0.0;
  float lo = __builtin_huge_valf(), hi = -__builtin_huge_valf();
  for (int l = 0; l < kLanes; ++l) {
    c += lane_i(cnt, l);
    bl += lane_i(nb, l);
    ab += lane_i(na, l);
    bad += lane_i(nonint, l);
    lo = lane(mn, l) < lo ? lane(mn, l) : lo;
    hi = lane(mx, l) > hi ? lane(mx, l) : hi;
  }
  r->count = c;
  r->sum = reduce_sum_dn(sum);
  r->min = lo;
  r->max = hi;
  r->below = bl;
  r->above = ab;
  r->integral = bad == 0.0;
}

// ---- centred sums (radix path moments, robust MAD) --------------------------------------

// Sums of d = v - c (in double, exact for float v and c) over the selected values in
// [lo, hi] (kWindow) or all selected values: count, sum d, d^2, d^3, d^4, |d| and the
// numbers of positive and negative d.  Unselected lanes are replaced by c itself, so they
// contribute d = 0 with no double-width mask.
struct Centred {
  double count, s1, s2, s3, s4, sabs, npos, nneg;
  // Central moments about c + e, e = s1 / count (the exact mean when no window is used):
  // mean |v - (c + e)| is exact because no d lies strictly between 0 and e (|e| is at most
  // half a float ulp of c when c is the mean rounded to float).
  double absdev_about(double e) const {
    const double zeros = count - npos - nneg;
    return (sabs - e * (npos - nneg) + (e < 0.0 ? -e : e) * zeros) / count;
  }
};

template <bool kMasked, bool kWindow>
static void centred_sums(const float* in, const uint8_t* mask, ptrdiff_t n, float c, float lo,
                         float hi, Centred* r) {
  using namespace simd;
  const vi one = vi{} + 1, zero = vi{};
  const vf cf = set1(c);
  const double cd = c;
  const vdn dzero = set1dn(0.0), done = set1dn(1.0);
  vi cnt = zero;
  vdn s1 = dzero, s2 = dzero, s3 = dzero, s4 = dzero, sa = dzero, np = dzero, nn = dzero;
  auto add = [&](vdn d) {
    s1 += d;
    const vdn d2 = d * d;
    s2 += d2;
    s3 += d2 * d;
    s4 += d2 * d2;
    sa += d < 0.0 ? -d : d;
    np += d > 0.0 ? done : dzero;
    nn += d < 0.0 ? done : dzero;
  };
  for_each_block<kMasked>(in, mask, n, [&](vf x, vi m) {
    vi on = m != zero;
    if (kWindow) on = on & (x >= lo) & (x <= hi);
    cnt += on ? one : zero;
    const vf xs = on ? x : cf;
    add(f2d_lo(xs) - cd);
    if (kLanes > 1) add(f2d_hi(xs) - cd);
  });
  double c_total = 0.0;
  for (int l = 0; l < kLanes; ++l) c_total += lane_i(cnt, l);
  r->count = c_total;
  r->s1 = reduce_sum_dn(s1);
  r->s2 = reduce_sum_dn(s2);
  r->s3 = reduce_sum_dn(s3);
  r->s4 = reduce_sum_dn(s4);
  r->sabs = reduce_sum_dn(sa);
  r->npos = reduce_sum_dn(np);
  r->nneg = reduce_sum_dn(nn);
}

// Smallest float >= v / largest float <= v (v finite).
static inline float float_at_least(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = __builtin_nextafterf(f, __builtin_huge_valf());
  return f;
}
static inline float float_at_most(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) > v) f = __builtin_nextafterf(f, -__builtin_huge_valf());
  return f;
}

// ---- counting path ------------------------------------------------------------------------

// counts[v - base] for every selected value v (integers, 0 <= v - base < span).  Four
// interleaved sub-histograms (when they fit) break the store-to-load dependency between
// equal neighbouring values; they are summed into counts[0 .. span).
template <bool kMasked>
static void count_values(const float* in, const uint8_t* mask, ptrdiff_t n, float base,
                         int32_t span, uint32_t* counts) {
  const int copies = span * 4 <= 65536 ? 4 : 1;
  zero_u32(counts, static_cast<ptrdiff_t>(span) * copies);
  ptrdiff_t i = 0;
  if (copies == 4) {
    uint32_t* c1 = counts + span;
    uint32_t* c2 = c1 + span;
    uint32_t* c3 = c2 + span;
    for (; i + 4 <= n; i += 4) {
      if (!kMasked || mask[i]) ++counts[static_cast<int32_t>(in[i] - base)];
      if (!kMasked || mask[i + 1]) ++c1[static_cast<int32_t>(in[i + 1] - base)];
      if (!kMasked || mask[i + 2]) ++c2[static_cast<int32_t>(in[i + 2] - base)];
      if (!kMasked || mask[i + 3]) ++c3[static_cast<int32_t>(in[i + 3] - base)];
    }
  }
  for (; i < n; ++i)
    if (!kMasked || mask[i]) ++counts[static_cast<int32_t>(in[i] - base)];
  if (copies == 4)
    for (int32_t v = 0; v < span; ++v)
      counts[v] += counts[span + v] + counts[2 * span + v] + counts[3 * span + v];
}

// Order statistics of the counted values for the sorted ranks in rs.
static void counted_order_stats(const uint32_t* counts, int32_t span, double base, RankSet* rs) {
  int k = 0;
  double cum = 0.0;
  for (int32_t v = 0; v < span && k < rs->n; ++v) {
    cum += counts[v];
    while (k < rs->n && static_cast<double>(rs->rank[k]) < cum) {
      rs->value[k] = base + v;
      ++k;
    }
  }
}

// The k-th smallest (0-based) |v - center| of the counted values, for k1 <= k2.
static void counted_deviations(const uint32_t* counts, int32_t span, double base, double center,
                               int64_t k1, int64_t k2, double* d1, double* d2) {
  // Left pointer: the largest value <= center; right pointer: the next one.
  int32_t left = static_cast<int32_t>(__builtin_floor(center - base));
  if (left > span - 1) left = span - 1;
  int32_t right = left + 1;
  double cum = 0.0;
  bool have1 = false;
  while (left >= 0 || right < span) {
    double dev;
    uint32_t c;
    const double dl = left >= 0 ? center - (base + left) : __builtin_huge_val();
    const double dr = right < span ? (base + right) - center : __builtin_huge_val();
    if (dl <= dr) {
      dev = dl;
      c = counts[left--];
    } else {
      dev = dr;
      c = counts[right++];
    }
    if (c == 0) continue;
    cum += c;
    if (!have1 && static_cast<double>(k1) < cum) {
      *d1 = dev;
      have1 = true;
    }
    if (static_cast<double>(k2) < cum) {
      *d2 = dev;
      return;
    }
  }
}

// ---- radix path -----------------------------------------------------------------------------

// Scratch of the radix path, carved out of the summary scratch (medimg::summary_scratch).
struct RadixScratch {
  uint32_t* hist;   // 65536 counters
  uint8_t* wanted;  // 81920 bytes of bucket-to-slot maps
  uint32_t* keys;   // n keys
};

// keys[i] = order-preserving key of in[i] for selected values (never 0 for a finite
// float), 0 for unselected ones, so that they sort first.
template <bool kMasked>
static void value_keys(const float* in, const uint8_t* mask, ptrdiff_t n, uint32_t* keys) {
  using namespace simd;
  const vi zero = vi{}, sign = vi{} + static_cast<int32_t>(0x80000000u);
  ptrdiff_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const vi u = float_bits(load(in + i));
    vi k = (u < zero) ? ~u : (u | sign);
    if (kMasked) k = (load_u8(mask + i) != zero) ? k : zero;
    __builtin_memcpy(keys + i, &k, sizeof k);
  }
  for (; i < n; ++i) keys[i] = (!kMasked || mask[i]) ? stats_key(in[i]) : 0u;
}

// keys[i] = 1 + bits of float(|in[i] - center|) (non-negative floats: the bit pattern is
// order-preserving) for selected values, 0 for unselected ones.
template <bool kMasked>
static void deviation_keys(const float* in, const uint8_t* mask, ptrdiff_t n, double center,
                           uint32_t* keys) {
  using namespace simd;
  const vi zero = vi{}, one = vi{} + 1;
  ptrdiff_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const vf x = load(in + i);
    vdn lo = f2d_lo(x) - center;
    lo = lo < 0.0 ? -lo : lo;
    vdn hi = set1dn(0.0);
    if (kLanes > 1) {
      hi = f2d_hi(x) - center;
      hi = hi < 0.0 ? -hi : hi;
    }
    vi k = float_bits(dn2f(lo, hi)) + one;
    if (kMasked) k = (load_u8(mask + i) != zero) ? k : zero;
    __builtin_memcpy(keys + i, &k, sizeof k);
  }
  for (; i < n; ++i) {
    if (kMasked && !mask[i]) {
      keys[i] = 0u;
      continue;
    }
    const double d = static_cast<double>(in[i]) - center;
    const float a = static_cast<float>(d < 0.0 ? -d : d);
    uint32_t u;
    __builtin_memcpy(&u, &a, sizeof u);
    keys[i] = u + 1u;
  }
}

// Resolves the sorted ranks rs (ranks among the selected values; `skip` unselected keys
// equal to 0 sort before them) against sc.keys[0..n), 16 + 8 + 8 bits at a time:
//   1. histogram of the top 16 bits over all n keys, then the keys of the buckets that
//      hold a wanted rank are compacted to the front, in place (usually a few percent);
//   2. one pass over those candidates histograms their next 8 bits, one 256-counter
//      histogram per wanted top-16 bucket (a byte map gives each bucket its slot), and
//      compacts the keys whose top 24 bits hold a wanted rank;
//   3. one more pass histograms the last 8 bits per wanted 24-bit prefix.
// Every pass is linear, whatever the data; sc.keys is overwritten.
static inline int rank_slot(const uint32_t* prefix, int n, uint32_t v) {
  for (int i = 0; i < n; ++i)
    if (prefix[i] == v) return i;
  return -1;
}

static void radix_select(const RadixScratch& sc, ptrdiff_t n, double skip, const RankSet& rs,
                         uint32_t* out_keys) {
  constexpr int kB1 = 16, kB2 = 8, kB3 = 8;
  constexpr uint32_t kM2 = (1u << kB2) - 1u, kM3 = (1u << kB3) - 1u;
  uint32_t* keys = sc.keys;
  uint32_t* h1 = sc.hist;              // 65536
  uint32_t* h2 = sc.hist;              // kStatsMaxRanks x 256 (levels 2, 3; h1 is done)
  uint8_t* slot1 = sc.wanted;          // 65536: 1 + slot of a wanted top-16 bucket, or 0
  uint8_t* slot2 = sc.wanted + 65536;  // kStatsMaxRanks x 256: 1 + level-3 slot, or 0
  double target[kStatsMaxRanks];       // rank within the current prefix
  uint32_t prefix[kStatsMaxRanks];     // the current prefix of every rank
  for (int k = 0; k < rs.n; ++k) target[k] = skip + static_cast<double>(rs.rank[k]);

  // Level 1.
  zero_u32(h1, 1 << kB1);
  for (ptrdiff_t i = 0; i < n; ++i) ++h1[keys[i] >> (32 - kB1)];
  {
    int k = 0;
    double cum = 0.0;
    for (uint32_t b = 0; b < (1u << kB1) && k < rs.n; ++b) {
      const double next = cum + h1[b];
      while (k < rs.n && target[k] < next) {
        prefix[k] = b;
        target[k] -= cum;
        ++k;
      }
      cum = next;
    }
  }
  uint32_t p1[kStatsMaxRanks];
  int n1 = 0;
  for (int i = 0; i < (1 << kB1); ++i) slot1[i] = 0;
  for (int k = 0; k < rs.n; ++k)
    if (rank_slot(p1, n1, prefix[k]) < 0) {
      p1[n1] = prefix[k];
      slot1[prefix[k]] = static_cast<uint8_t>(++n1);
    }
  ptrdiff_t nc = 0;
  for (ptrdiff_t i = 0; i < n; ++i) {
    const uint32_t kk = keys[i];
    if (slot1[kk >> (32 - kB1)]) keys[nc++] = kk;
  }

  // Level 2: one histogram per wanted top-16 bucket, one pass.
  zero_u32(h2, static_cast<ptrdiff_t>(n1) << kB2);
  for (ptrdiff_t j = 0; j < nc; ++j) {
    const uint32_t kk = keys[j];
    const int s1 = slot1[kk >> (32 - kB1)] - 1;
    ++h2[(s1 << kB2) + ((kk >> kB3) & kM2)];
  }
  for (int k0 = 0; k0 < rs.n;) {
    int k1 = k0;
    while (k1 < rs.n && prefix[k1] == prefix[k0]) ++k1;
    const uint32_t* h = h2 + (rank_slot(p1, n1, prefix[k0]) << kB2);
    double cum = 0.0;
    int k = k0;
    for (uint32_t b = 0; b <= kM2 && k < k1; ++b) {
      const double next = cum + h[b];
      while (k < k1 && target[k] < next) {
        prefix[k] = (prefix[k] << kB2) | b;
        target[k] -= cum;
        ++k;
      }
      cum = next;
    }
    k0 = k1;
  }
  uint32_t p2[kStatsMaxRanks];
  int n2 = 0;
  for (ptrdiff_t i = 0; i < (static_cast<ptrdiff_t>(n1) << kB2); ++i) slot2[i] = 0;
  for (int k = 0; k < rs.n; ++k)
    if (rank_slot(p2, n2, prefix[k]) < 0) {
      p2[n2] = prefix[k];
      const int s1 = slot1[prefix[k] >> kB2] - 1;
      slot2[(s1 << kB2) + (prefix[k] & kM2)] = static_cast<uint8_t>(++n2);
    }
  ptrdiff_t nc2 = 0;
  for (ptrdiff_t j = 0; j < nc; ++j) {
    const uint32_t kk = keys[j];
    const int s1 = slot1[kk >> (32 - kB1)] - 1;
    if (slot2[(s1 << kB2) + ((kk >> kB3) & kM2)]) keys[nc2++] = kk;
  }

  // Level 3: one histogram per wanted 24-bit prefix, one pass.
  zero_u32(h2, static_cast<ptrdiff_t>(n2) << kB3);
  for (ptrdiff_t j = 0; j < nc2; ++j) {
    const uint32_t kk = keys[j];
    const int s1 = slot1[kk >> (32 - kB1)] - 1;
    const int s2 = slot2[(s1 << kB2) + ((kk >> kB3) & kM2)] - 1;
    ++h2[(s2 << kB3) + (kk & kM3)];
  }
  for (int k0 = 0; k0 < rs.n;) {
    int k1 = k0;
    while (k1 < rs.n && prefix[k1] == prefix[k0]) ++k1;
    const uint32_t* h = h2 + (rank_slot(p2, n2, prefix[k0]) << kB3);
    double cum = 0.0;
    int k = k0;
    for (uint32_t b = 0; b <= kM3 && k < k1; ++b) {
      cum += h[b];
      while (k < k1 && target[k] < cum) {
        out_keys[k] = (prefix[k] << kB3) | b;
        ++k;
      }
    }
    k0 = k1;
  }
}

// ---- radix path: equal-width histogram ---------------------------------------------------

// numpy.histogram's bin of a float v is the number of edges i = 1 .. bins-1 with
// v >= edge(i), and for a float v, v >= edge(i) exactly when v >= fe[i], the smallest float
// >= edge(i).  A float guess (v - first) * bins / (last - first) is within one bin of it
// (bins <= 4096, relative error ~1e-7), so one gathered comparison on each side corrects
// it.  Increments go to four interleaved sub-histograms (sub: 4 * bins counters) that
// break the dependency between equal neighbouring bins, then are summed into hist.
template <bool kMasked>
static void stats_hist(const float* in, const uint8_t* mask, ptrdiff_t n, const HistSpec* hs,
                       uint32_t* hist, uint32_t* sub) {
  using namespace simd;
  const int bins = hs->bins;
  float fe[medimg::kStatsMaxBins + 1];
  fe[0] = -__builtin_huge_valf();
  for (int i = 1; i < bins; ++i) fe[i] = float_at_least(hist_edge(*hs, i));
  fe[bins] = __builtin_huge_valf();
  zero_u32(sub, 4 * static_cast<ptrdiff_t>(bins));
  const vf first = set1(static_cast<float>(hs->first));
  const vf scale = set1(static_cast<float>(static_cast<double>(bins) / hs->denom));
  const vf top = set1(static_cast<float>(bins - 1));
  const vi one = vi{} + 1, zero = vi{};
  for_each_block<kMasked>(in, mask, n, [&](vf x, vi m) {
    // clamp in float before converting: the guess of a far value cannot overflow int32
    vi g = to_int(clamp((x - first) * scale, set1(0.0f), top));
    g = (x < gather(fe, g)) ? g - one : g;
    g = (x >= gather(fe + 1, g)) ? g + one : g;
    int32_t gi[kLanes], mi[kLanes];
    __builtin_memcpy(gi, &g, sizeof gi);
    const vi on = m != zero;
    __builtin_memcpy(mi, &on, sizeof mi);
    for (int l = 0; l < kLanes; ++l)
      if (mi[l]) ++sub[(l & 3) * bins + gi[l]];
  });
  for (int b = 0; b < bins; ++b)
    hist[b] += sub[b] + sub[bins + b] + sub[2 * bins + b] + sub[3 * bins + b];
}

// ---- the summary kernel -------------------------------------------------------------------

// The order statistics a summary request needs (every quantile, the median pair for
// MAD, the rMAD window bounds), as ranks among N values.
struct SummaryPlan {
  RankSet rs;
  int64_t qlo[medimg::kStatsMaxQuantiles + 3], qhi[medimg::kStatsMaxQuantiles + 3];
  double qg[medimg::kStatsMaxQuantiles + 3];
  int i_rmad = 0;
  bool want_rmad = false;
  int64_t med1 = 0, med2 = 0;
};
static void plan_ranks(double N, const medimg::SummaryRequest* rq, SummaryPlan* p) {
  p->want_rmad = rq->rmad_lo >= 0.0 && rq->rmad_lo <= rq->rmad_hi && rq->rmad_hi <= 1.0;
  double qs[medimg::kStatsMaxQuantiles + 3];
  int nqs = 0;
  for (int i = 0; i < rq->nq; ++i) qs[nqs++] = rq->q[i];
  p->i_rmad = nqs;
  if (p->want_rmad) {
    qs[nqs++] = rq->rmad_lo;
    qs[nqs++] = rq->rmad_hi;
  }
  for (int i = 0; i < nqs; ++i) {
    percentile_ranks(N, qs[i], &p->qlo[i], &p->qhi[i], &p->qg[i]);
    p->rs.add(p->qlo[i]);
    p->rs.add(p->qhi[i]);
  }
  const int64_t total = static_cast<int64_t>(N);
  p->med1 = (total - 1) / 2;  // numpy.median's middle pair
  p->med2 = total / 2;
  if (rq->mad) {
    p->rs.add(p->med1);
    p->rs.add(p->med2);
  }
}

// The counting path from the counts (counts[v] of the value base + v, v < span; N of them):
// moments, histogram, order statistics (the ranks of rs), MAD and rMAD, as summary_impl
// documents.  Shared by summary_kernel (float input) and summary_u8_kernel.
static void summary_from_counts(const uint32_t* counts, int32_t span, double base, double N,
                                const medimg::SummaryRequest* rq, const HistSpec& hs,
                                SummaryPlan& plan, medimg::Summary* out) {
  RankSet& rs = plan.rs;
  // Sums of integers (exact in double below 2^53).
  double s1 = 0.0, sq = 0.0;
  for (int32_t v = 0; v < span; ++v) {
    const double x = base + v;
    s1 += counts[v] * x;
    sq += counts[v] * (x * x);
  }
  const double mean = s1 / N;
  out->mean = mean;
  out->sumsq = sq;
  double s2 = 0.0, s3 = 0.0, s4 = 0.0, sa = 0.0;
  for (int32_t v = 0; v < span; ++v) {
    if (counts[v] == 0) continue;
    const double c = counts[v];
    const double d = (base + v) - mean;
    const double d2 = d * d;
    s2 += c * d2;
    s3 += c * d2 * d;
    s4 += c * d2 * d2;
    sa += c * (d < 0.0 ? -d : d);
    if (rq->bins > 0) rq->hist[hist_bin(hs, base + v)] += counts[v];
  }
  out->m2 = s2 / N;
  out->m3 = s3 / N;
  out->m4 = s4 / N;
  out->absdev = sa / N;
  if (rs.n > 0) counted_order_stats(counts, span, base, &rs);
  if (rq->mad) {
    const double center = (rs.get(plan.med1) + rs.get(plan.med2)) / 2.0;
    double d1 = 0.0, d2 = 0.0;
    counted_deviations(counts, span, base, center, plan.med1, plan.med2, &d1, &d2);
    out->mad = (d1 + d2) / 2.0;
  }
  if (plan.want_rmad) {
    const double lo =
        np_lerp(rs.get(plan.qlo[plan.i_rmad]), rs.get(plan.qhi[plan.i_rmad]), plan.qg[plan.i_rmad]);
    const double hi = np_lerp(rs.get(plan.qlo[plan.i_rmad + 1]), rs.get(plan.qhi[plan.i_rmad + 1]),
                              plan.qg[plan.i_rmad + 1]);
    double c = 0.0, s = 0.0;
    for (int32_t v = 0; v < span; ++v) {
      const double x = base + v;
      if (counts[v] == 0 || x < lo || x > hi) continue;
      c += counts[v];
      s += counts[v] * x;
    }
    // No value in [Q(lo), Q(hi)] (only possible with 2 values): 0.
    const double m = c > 0.0 ? s / c : 0.0;
    double a = 0.0;
    for (int32_t v = 0; v < span; ++v) {
      const double x = base + v;
      if (counts[v] == 0 || x < lo || x > hi) continue;
      a += counts[v] * (x > m ? x - m : m - x);
    }
    out->rmad = c > 0.0 ? a / c : 0.0;
  }
}

template <bool kMasked>
static void summary_impl(const float* in, ptrdiff_t n, const medimg::SummaryRequest* rq,
                         medimg::Summary* out, uint32_t* scratch) {
  const uint8_t* mask = rq->mask;
  Pass1 p1;
  stats_pass1<kMasked>(in, mask, n, rq->below, rq->above, &p1);
  *out = medimg::Summary{};
  out->count = p1.count;
  out->n_below = p1.below;
  out->n_above = p1.above;
  for (int b = 0; b < rq->bins; ++b) rq->hist[b] = 0u;
  for (int i = 0; i < rq->nq; ++i) rq->qout[i] = 0.0;
  if (p1.count == 0.0) return;
  const double N = p1.count;
  const double mean_hint = p1.sum / N;  // refined below on both paths
  out->min = p1.min;
  out->max = p1.max;

  SummaryPlan plan;
  plan_ranks(N, rq, &plan);
  RankSet& rs = plan.rs;
  const int64_t *qlo = plan.qlo, *qhi = plan.qhi;
  const double* qg = plan.qg;
  const int i_rmad = plan.i_rmad;
  const bool want_rmad = plan.want_rmad;
  const int64_t med1 = plan.med1, med2 = plan.med2;
  const bool need_order = rs.n > 0;
  const HistSpec hs = hist_spec(p1.min, p1.max, rq->bins > 0 ? rq->bins : 1);
  const bool counting = p1.integral && (p1.max - p1.min) < 65536.0;
  out->counting = counting ? 1 : 0;

  if (counting) {
    const int32_t span = static_cast<int32_t>(p1.max - p1.min) + 1;
    uint32_t* counts = scratch;
    count_values<kMasked>(in, mask, n, p1.min, span, counts);
    summary_from_counts(counts, span, p1.min, N, rq, hs, plan, out);
  } else {
    RadixScratch sc;
    sc.hist = scratch;
    sc.wanted = reinterpret_cast<uint8_t*>(scratch + 65536);
    sc.keys = scratch + 65536 + 20480;
    const double skip = static_cast<double>(n) - N;  // unselected keys (0) sort first
    // Moments about c = mean rounded to float, then shifted by e = mean - c.
    Centred cs;
    centred_sums<kMasked, false>(in, mask, n, static_cast<float>(mean_hint), 0.0f, 0.0f, &cs);
    const double c = static_cast<float>(mean_hint);
    const double e = cs.s1 / N;
    const double a2 = cs.s2 / N, a3 = cs.s3 / N, a4 = cs.s4 / N;
    out->mean = c + e;
    out->m2 = a2 - e * e;
    out->m3 = a3 - 3.0 * e * a2 + 2.0 * e * e * e;
    out->m4 = a4 - 4.0 * e * a3 + 6.0 * e * e * a2 - 3.0 * e * e * e * e;
    out->absdev = cs.absdev_about(e);
    out->sumsq = cs.s2 + 2.0 * c * cs.s1 + N * c * c;
    if (rq->bins > 0) stats_hist<kMasked>(in, mask, n, &hs, rq->hist, sc.hist);
    if (need_order) {
      uint32_t keys[kStatsMaxRanks];
      value_keys<kMasked>(in, mask, n, sc.keys);
      radix_select(sc, n, skip, rs, keys);
      for (int k = 0; k < rs.n; ++k) rs.value[k] = stats_unkey(keys[k]);
    }
    if (rq->mad) {
      const double center = (rs.get(med1) + rs.get(med2)) / 2.0;
      RankSet dr;
      dr.add(med1);
      dr.add(med2);
      uint32_t keys[kStatsMaxRanks];
      deviation_keys<kMasked>(in, mask, n, center, sc.keys);
      radix_select(sc, n, skip, dr, keys);
      const uint32_t b1 = keys[0] - 1u, b2 = keys[dr.n - 1] - 1u;
      float d1, d2;
      __builtin_memcpy(&d1, &b1, sizeof d1);
      __builtin_memcpy(&d2, &b2, sizeof d2);
      out->mad = (static_cast<double>(d1) + static_cast<double>(d2)) / 2.0;
    }
    if (want_rmad) {
      const double lo = np_lerp(rs.get(qlo[i_rmad]), rs.get(qhi[i_rmad]), qg[i_rmad]);
      const double hi = np_lerp(rs.get(qlo[i_rmad + 1]), rs.get(qhi[i_rmad + 1]), qg[i_rmad + 1]);
      const float flo = float_at_least(lo), fhi = float_at_most(hi);
      const float mid = static_cast<float>(0.5 * (lo + hi));
      Centred w;
      centred_sums<kMasked, true>(in, mask, n, mid, flo, fhi, &w);
      if (w.count > 0.0) {  // else no value in [Q(lo), Q(hi)] (only with 2 values): 0
        const double mw = static_cast<double>(mid) + w.s1 / w.count;
        Centred a;
        centred_sums<kMasked, true>(in, mask, n, static_cast<float>(mw), flo, fhi, &a);
        out->rmad = a.absdev_about(mw - static_cast<double>(static_cast<float>(mw)));
      }
    }
  }
  for (int i = 0; i < rq->nq; ++i) rq->qout[i] = np_lerp(rs.get(qlo[i]), rs.get(qhi[i]), qg[i]);
}

static void summary_kernel(const float* in, ptrdiff_t n, const medimg::SummaryRequest* rq,
                           medimg::Summary* out, uint32_t* scratch) {
  if (rq->mask != nullptr)
    summary_impl<true>(in, n, rq, out, scratch);
  else
    summary_impl<false>(in, n, rq, out, scratch);
}

// summary() of uint8 values: one pass counts the bytes (four interleaved sub-histograms);
// count, min, max, the threshold counts and everything else then come from the 256 counts
// (the counting path of summary_impl, so the results are those of the float32 copy).
static void summary_u8_kernel(const uint8_t* in, ptrdiff_t n, const medimg::SummaryRequest* rq,
                              medimg::Summary* out, uint32_t* scratch) {
  // Four interleaved sub-histograms of 257 words (the last one counts the unselected
  // values, so the masked loop has no branch), summed into the first.
  uint32_t* c = scratch;
  constexpr int kW = 257;
  zero_u32(c, 4 * kW);
  const uint8_t* mask = rq->mask;
  ptrdiff_t i = 0;
  if (mask == nullptr) {
    for (; i + 4 <= n; i += 4) {
      ++c[in[i]];
      ++c[kW + in[i + 1]];
      ++c[2 * kW + in[i + 2]];
      ++c[3 * kW + in[i + 3]];
    }
  } else {
    for (; i + 4 <= n; i += 4) {
      ++c[mask[i] != 0 ? in[i] : 256];
      ++c[kW + (mask[i + 1] != 0 ? in[i + 1] : 256)];
      ++c[2 * kW + (mask[i + 2] != 0 ? in[i + 2] : 256)];
      ++c[3 * kW + (mask[i + 3] != 0 ? in[i + 3] : 256)];
    }
  }
  for (; i < n; ++i)
    if (mask == nullptr || mask[i] != 0) ++c[in[i]];
  for (int v = 0; v < 256; ++v) c[v] += c[kW + v] + c[2 * kW + v] + c[3 * kW + v];
  *out = medimg::Summary{};
  double N = 0.0, below = 0.0, above = 0.0;
  int lo = 256, hi = -1;
  for (int v = 0; v < 256; ++v) {
    if (c[v] == 0) continue;
    N += c[v];
    lo = v < lo ? v : lo;
    hi = v;
    if (static_cast<float>(v) <= rq->below) below += c[v];
    if (static_cast<float>(v) >= rq->above) above += c[v];
  }
  out->count = N;
  out->n_below = below;
  out->n_above = above;
  for (int b = 0; b < rq->bins; ++b) rq->hist[b] = 0u;
  for (int k = 0; k < rq->nq; ++k) rq->qout[k] = 0.0;
  if (N == 0.0) return;
  out->min = lo;
  out->max = hi;
  out->counting = 1;
  SummaryPlan plan;
  plan_ranks(N, rq, &plan);
  const HistSpec hs = hist_spec(lo, hi, rq->bins > 0 ? rq->bins : 1);
  summary_from_counts(c + lo, hi - lo + 1, lo, N, rq, hs, plan, out);
  for (int k = 0; k < rq->nq; ++k)
    rq->qout[k] = np_lerp(plan.rs.get(plan.qlo[k]), plan.rs.get(plan.qhi[k]), plan.qg[k]);
}

// ---- gradient: Sobel magnitude and orientation histogram --------------------------------

// Boundaries k pi / bins (k = 1 .. bins-1) of the orientation bins as (cos, sin) pairs,
// exact at multiples of pi/4.  A folded gradient (gx, gy), gy > 0 or (gy == 0, gx >= 0),
// has orientation >= k pi / bins exactly when gy cos - gx sin >= 0.
static void orientation_boundaries(int bins, float* c, float* s) {
  const double pi = 3.14159265358979323846;
  const float r = 0.70710678118654752f;
  for (int k = 0; k < bins; ++k) {
    if ((4 * k) % bins == 0) {
      const int eighth = (4 * k) / bins;  // 0: 0, 1: pi/4, 2: pi/2, 3: 3pi/4
      const float cs[4] = {1.0f, r, 0.0f, -r};
      const float sn[4] = {0.0f, r, 1.0f, r};
      c[k] = cs[eighth];
      s[k] = sn[eighth];
    } else {
      const double phi = pi * static_cast<double>(k) / static_cast<double>(bins);
      c[k] = static_cast<float>(__builtin_cos(phi));
      s[k] = static_cast<float>(__builtin_sin(phi));
    }
  }
}

// Magnitude-weighted histogram of the orientation folded into [0, pi), shared by the
// gradient kernels.  Cumulative sums S_k (magnitude of pixels with orientation >= k pi /
// bins): float lanes over kFlush vectors, then double lanes (vdn, no horizontal sum until
// finish()).
struct OrientationHist {
  static constexpr int kFlush = 16;  // vectors summed in float before going to double
  int bins, pending = 0;
  float cb[medimg::kGradientMaxBins], sb[medimg::kGradientMaxBins];
  simd::vdn cum[medimg::kGradientMaxBins];
  simd::vf acc[medimg::kGradientMaxBins];
  explicit OrientationHist(int b) : bins(b) {
    orientation_boundaries(bins, cb, sb);
    for (int k = 0; k < bins; ++k) {
      cum[k] = simd::set1dn(0.0);
      acc[k] = simd::set1(0.0f);
    }
  }
  void flush() {
    for (int k = 0; k < bins; ++k) {
      cum[k] += simd::f2d_lo(acc[k]);
      if (simd::kLanes > 1) cum[k] += simd::f2d_hi(acc[k]);
      acc[k] = simd::set1(0.0f);
    }
    pending = 0;
  }
  // w: the magnitudes, 0 in the lanes not selected.
  void add(simd::vf gx, simd::vf gy, simd::vf w) {
    using namespace simd;
    const vf fzero = set1(0.0f);
    const vi neg = (gy < 0.0f) | ((gy == 0.0f) & (gx < 0.0f));
    const vf fx = neg ? -gx : gx;
    const vf fy = neg ? -gy : gy;
    acc[0] += w;
    for (int k = 1; k < bins; ++k) acc[k] += (fy * cb[k] - fx * sb[k] >= 0.0f) ? w : fzero;
    if (++pending == kFlush) flush();
  }
  void finish(double* hist) {
    flush();
    double total[medimg::kGradientMaxBins + 1];
    for (int k = 0; k < bins; ++k) total[k] = simd::reduce_sum_dn(cum[k]);
    total[bins] = 0.0;
    for (int k = 0; k < bins; ++k) {
      const double h = total[k] - total[k + 1];  // >= 0 up to rounding
      hist[k] = h > 0.0 ? h : 0.0;
    }
  }
};

// Lanes x .. x + kLanes - 1 of a row that are inside the row and selected by the mask row
// krow (every pixel if krow is nullptr), as an int32 lane mask.
static inline simd::vi selected_lanes(const uint8_t* krow, ptrdiff_t x, ptrdiff_t cols) {
  using namespace simd;
  const vi zero = vi{};
  if (x + kLanes <= cols) return krow != nullptr ? (load_u8(krow + x) != zero) : (zero == zero);
  uint8_t t[kLanes];
  for (int l = 0; l < kLanes; ++l)
    t[l] = (x + l < cols && (krow == nullptr || krow[x + l] != 0)) ? 1 : 0;
  return load_u8(t) != zero;
}

static void gradient_kernel(const float* in, const uint8_t* mask, ptrdiff_t rows, ptrdiff_t cols,
                            int bins, float* magnitude, double* hist, float* scratch) {
  using namespace simd;
  const ptrdiff_t stride = medimg::padded_stride(cols, 1);
  pad_image<true>(in, rows, cols, 1, 0.0f, scratch, stride);
  OrientationHist oh(bins);
  const vf fzero = set1(0.0f);
  for (ptrdiff_t y = 0; y < rows; ++y) {
    const float* n = scratch + y * stride;
    const float* c = n + stride;
    const float* s = c + stride;
    float* mrow = magnitude + y * cols;
    const uint8_t* krow = mask != nullptr ? mask + y * cols : nullptr;
    for (ptrdiff_t x = 0; x < cols; x += kLanes) {
      const vf gx = (load(n + x + 2) - load(n + x)) + 2.0f * (load(c + x + 2) - load(c + x)) +
                    (load(s + x + 2) - load(s + x));
      const vf gy = (load(s + x) + 2.0f * load(s + x + 1) + load(s + x + 2)) -
                    (load(n + x) + 2.0f * load(n + x + 1) + load(n + x + 2));
      const vf mag = vsqrt(gx * gx + gy * gy);
      store_row(mrow, mag, x, cols);
      oh.add(gx, gy, selected_lanes(krow, x, cols) ? mag : fzero);
    }
    oh.flush();
  }
  oh.finish(hist);
}

// ---- gradient of a uint8 image: integer Sobel, fused moments and quantiles ----------------
//
// gradient_u8_kernel computes what gradient_kernel + summary + masked_quantile compute for
// the float32 copy of a uint8 image, in one pass over the image and without a float
// magnitude image: the Sobel sums gx, gy are integers (|g| <= 1020), so m2 = gx^2 + gy^2 is
// an exact integer (< 2^21) and the float32 magnitude is sqrtf(m2), a non-decreasing
// function of m2.  Hence
//   * the orientation histogram: the same float operations on the same (exact) gx, gy as
//     gradient_kernel, accumulated in the same order: bit-identical;
//   * mean and std: sums of the float magnitudes and their squares in double lanes;
//   * quantiles (numpy.percentile, "linear"): the k-th smallest magnitude is sqrtf of the
//     k-th smallest m2, selected exactly in two levels: while the pass runs, m2 is stored
//     (uint32, 0xFFFFFFFF outside the mask) and counted into buckets keyed by the top bits
//     of its float32 pattern (exponent + 7 mantissa bits: every bucket holds m2 values
//     within 1/128 relative, at most 2^14 distinct integers); the buckets of the wanted
//     ranks are then counted value by value over the stored m2 (vector compare, scalar
//     increments for the few matching lanes only).
namespace gradu8 {
constexpr uint32_t kUnselected = 0xFFFFFFFFu;
constexpr int kKeys = medimg::kGradientU8Keys;  // bucket keys; the last one: unselected
constexpr int kSpan = medimg::kGradientU8Span;  // largest bucket span in m2 values

// Bucket key of m2 (0 for m2 = 0; 1 + 128 (e - 127) + top 7 mantissa bits otherwise).
static inline simd::vi key_of(simd::vi m2) {
  using namespace simd;
  const vi bits = float_bits(to_float(m2));
  const vi k = ((bits >> 16) - (127 << 7)) + 1;
  return m2 == 0 ? vi{} : k;
}
static inline int32_t key_of1(uint32_t m2) {
  if (m2 == 0) return 0;
  const float f = static_cast<float>(m2);
  int32_t b;
  __builtin_memcpy(&b, &f, sizeof b);
  return ((b >> 16) - (127 << 7)) + 1;
}
// Smallest m2 with key k (k >= 1).
static inline uint32_t key_low(int32_t k) {
  const int32_t b = ((k - 1) + (127 << 7)) << 16;
  float f;
  __builtin_memcpy(&f, &b, sizeof f);
  return static_cast<uint32_t>(__builtin_ceil(static_cast<double>(f)));
}
}  // namespace gradu8

static void gradient_u8_kernel(const uint8_t* in, const uint8_t* mask, ptrdiff_t rows,
                               ptrdiff_t cols, int bins, int nq, const double* q, double* qout,
                               double* hist, double* moments, uint32_t* scratch) {
  using namespace simd;
  using namespace gradu8;
  const ptrdiff_t n = rows * cols;
  const ptrdiff_t stride = medimg::gradient_u8_stride(cols);
  // Scratch: padded image (bytes), m2 of every pixel, per-row keys, bucket counts (two
  // interleaved copies), value counts of a bucket.
  uint8_t* pad = reinterpret_cast<uint8_t*>(scratch);
  uint32_t* m2s = scratch + ((rows + 2) * stride + 3) / 4;
  int32_t* keys = reinterpret_cast<int32_t*>(m2s + n);
  uint32_t* h0 = reinterpret_cast<uint32_t*>(keys + cols + kLanes);
  uint32_t* h1 = h0 + kKeys;
  uint32_t* vc = h1 + kKeys;
  for (ptrdiff_t py = 0; py < rows + 2; ++py) {
    const uint8_t* src = in + reflect101(py - 1, rows) * cols;
    uint8_t* d = pad + py * stride;
    d[0] = src[reflect101(-1, cols)];
    __builtin_memcpy(d + 1, src, static_cast<size_t>(cols));
    d[cols + 1] = src[reflect101(cols, cols)];
    for (ptrdiff_t x = cols + 2; x < stride; ++x) d[x] = 0;
  }
  zero_u32(h0, 2 * kKeys);
  OrientationHist oh(bins);
  const vi zero = vi{}, unsel = zero + static_cast<int32_t>(kUnselected);
  const vi unsel_key = zero + (kKeys - 1);
  const vf fzero = set1(0.0f);
  vdn vsum = set1dn(0.0), vsq = set1dn(0.0);
  for (ptrdiff_t y = 0; y < rows; ++y) {
    const uint8_t* nr = pad + y * stride;
    const uint8_t* cr = nr + stride;
    const uint8_t* sr = cr + stride;
    const uint8_t* krow = mask != nullptr ? mask + y * cols : nullptr;
    uint32_t* mrow = m2s + y * cols;
    for (ptrdiff_t x = 0; x < cols; x += kLanes) {
      const vi n0 = load_u8(nr + x), n1 = load_u8(nr + x + 1), n2 = load_u8(nr + x + 2);
      const vi c0 = load_u8(cr + x), c2 = load_u8(cr + x + 2);
      const vi s0 = load_u8(sr + x), s1 = load_u8(sr + x + 1), s2 = load_u8(sr + x + 2);
      const vi igx = (n2 - n0) + 2 * (c2 - c0) + (s2 - s0);
      const vi igy = (s0 + 2 * s1 + s2) - (n0 + 2 * n1 + n2);
      const vi m2 = igx * igx + igy * igy;
      const vf gx = to_float(igx), gy = to_float(igy);
      const vf mag = vsqrt(to_float(m2));
      const vi on = selected_lanes(krow, x, cols);
      const vf w = on ? mag : fzero;
      oh.add(gx, gy, w);
      const vdn wlo = f2d_lo(w);
      vsum += wlo;
      vsq += wlo * wlo;
      if (kLanes > 1) {
        const vdn whi = f2d_hi(w);
        vsum += whi;
        vsq += whi * whi;
      }
      const vi stored = on != zero ? m2 : unsel;
      const vi key = on != zero ? key_of(m2) : unsel_key;
      if (x + kLanes <= cols) {
        __builtin_memcpy(mrow + x, &stored, sizeof stored);
      } else {
        uint32_t t[kLanes];
        __builtin_memcpy(t, &stored, sizeof stored);
        for (ptrdiff_t l = 0; x + l < cols; ++l) mrow[x + l] = t[l];
      }
      __builtin_memcpy(keys + x, &key, sizeof key);
    }
    oh.flush();
    // Bucket counts, even / odd columns into two copies (no store-to-load chains on
    // runs of equal values).
    ptrdiff_t x = 0;
    for (; x + 1 < cols; x += 2) {
      ++h0[keys[x]];
      ++h1[keys[x + 1]];
    }
    if (x < cols) ++h0[keys[x]];
  }
  oh.finish(hist);
  for (int k = 0; k < kKeys; ++k) h0[k] += h1[k];
  const double count = static_cast<double>(n - static_cast<ptrdiff_t>(h0[kKeys - 1]));
  const double sum = reduce_sum_dn(vsum), sq = reduce_sum_dn(vsq);
  moments[0] = count;
  moments[1] = count > 0.0 ? sum / count : __builtin_nan("");
  const double var = count > 0.0 ? sq / count - moments[1] * moments[1] : __builtin_nan("");
  moments[2] = var > 0.0 ? var : 0.0;
  // The bucket of the k-th smallest m2 (0-based k < count) and the ranks before it.
  auto bucket_of = [&](int64_t rank, int64_t* before) -> int32_t {
    int32_t b = 0;
    *before = 0;
    while (*before + static_cast<int64_t>(h0[b]) <= rank) *before += h0[b++];
    return b;
  };
  // The value counts of bucket b (b >= 1) into vc: one pass over the stored m2.
  auto count_bucket = [&](int32_t b) {
    const vi vb = zero + b;
    zero_u32(vc, kSpan);
    const uint32_t lo = key_low(b);
    ptrdiff_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      vi m;
      __builtin_memcpy(&m, m2s + i, sizeof m);
      const vi hit = (m != unsel) & (key_of(m) == vb);
      if (!any_lane(hit)) continue;
      for (int l = 0; l < kLanes; ++l)
        if (m2s[i + l] != kUnselected && key_of1(m2s[i + l]) == b) ++vc[m2s[i + l] - lo];
    }
    for (; i < n; ++i)
      if (m2s[i] != kUnselected && key_of1(m2s[i]) == b) ++vc[m2s[i] - lo];
  };
  // The (rank - before)-th smallest value of the counted bucket b.
  auto from_counts = [&](int32_t b, int64_t r) -> uint32_t {
    uint32_t v = 0;
    while (r >= static_cast<int64_t>(vc[v])) r -= vc[v++];
    return key_low(b) + v;
  };
  for (int j = 0; j < nq; ++j) {
    if (!(count > 0.0)) {
      qout[j] = __builtin_nan("");
      continue;
    }
    int64_t rlo, rhi;
    double gamma;
    percentile_ranks(count, q[j], &rlo, &rhi, &gamma);
    // The two ranks of the interpolation usually share a bucket: one pass counts it.
    int64_t before_lo, before_hi;
    const int32_t blo = bucket_of(rlo, &before_lo), bhi = bucket_of(rhi, &before_hi);
    uint32_t a = 0, b = 0;
    if (blo > 0) {
      count_bucket(blo);
      a = from_counts(blo, rlo - before_lo);
    }
    if (bhi == blo) {
      b = blo > 0 ? from_counts(blo, rhi - before_hi) : 0u;
    } else {
      count_bucket(bhi);  // bhi > blo >= 0
      b = from_counts(bhi, rhi - before_hi);
    }
    const double va = static_cast<double>(__builtin_sqrtf(static_cast<float>(a)));
    const double vb = static_cast<double>(__builtin_sqrtf(static_cast<float>(b)));
    qout[j] = np_lerp(va, vb, gamma);
  }
}

// ---- sharpness: Laplacian, Tenengrad, blur effect ---------------------------------------

static void sharpness_kernel(const float* in, ptrdiff_t rows, ptrdiff_t cols,
                             medimg::Sharpness* out, float* scratch) {
  using namespace simd;
  constexpr int r = medimg::kSharpnessBox / 2;
  const ptrdiff_t stride = medimg::padded_stride(cols, r);
  pad_image<true>(in, rows, cols, r, 0.0f, scratch, stride);
  const vi iota = stats_iota();
  const vf fzero = set1(0.0f);
  const float inv_box = 1.0f / static_cast<float>(medimg::kSharpnessBox);
  vf a_lap = fzero, a_lap2 = fzero, a_ten = fzero, a_dh = fzero, a_lh = fzero, a_dv = fzero,
     a_lv = fzero;
  constexpr int kFlush = 16;
  int pending = 0;
  // Float lanes over kFlush vectors, then double lanes; one horizontal sum at the end.
  vdn t[7];
  for (vdn& v : t) v = set1dn(0.0);
  auto add = [](vdn& total, vf part) {
    total += f2d_lo(part);
    if (kLanes > 1) total += f2d_hi(part);
  };
  auto flush = [&]() {
    add(t[0], a_lap);
    add(t[1], a_lap2);
    add(t[2], a_ten);
    add(t[3], a_dh);
    add(t[4], a_lh);
    add(t[5], a_dv);
    add(t[6], a_lv);
    a_lap = a_lap2 = a_ten = a_dh = a_lh = a_dv = a_lv = fzero;
    pending = 0;
  };
  for (ptrdiff_t y = 0; y < rows; ++y) {
    const float* c = scratch + (y + r) * stride + r;  // column x of the image at c[x]
    const float* u = c - stride;
    const float* d = c + stride;
    const float* far_up = c - (r + 1) * stride;  // row y - r - 1 (read only when y >= 1)
    const float* far_dn = c + r * stride;        // row y + r
    for (ptrdiff_t x = 0; x < cols; x += kLanes) {
      const vi valid = iota < static_cast<int32_t>(cols - x);
      const vf ctr = load(c + x), lft = load(c + x - 1), rgt = load(c + x + 1);
      const vf up = load(u + x), dn = load(d + x);
      const vf lap = valid ? (up + dn + lft + rgt) - 4.0f * ctr : fzero;
      a_lap += lap;
      a_lap2 += lap * lap;
      const vf gx = (load(u + x + 1) - load(u + x - 1)) + 2.0f * (rgt - lft) +
                    (load(d + x + 1) - load(d + x - 1));
      const vf gy = (load(d + x - 1) + 2.0f * dn + load(d + x + 1)) -
                    (load(u + x - 1) + 2.0f * up + load(u + x + 1));
      a_ten += valid ? gx * gx + gy * gy : fzero;
      // Horizontal pairs (x - 1, x), x >= 1: box sums differ by c[x + r] - c[x - r - 1].
      const vi valid_h = valid & ((iota + static_cast<int32_t>(x)) >= 1);
      const vf dh = vabs(ctr - lft);
      const vf dbh = vabs(load(c + x + r) - load(c + x - r - 1)) * inv_box;
      a_dh += valid_h ? dh : fzero;
      a_lh += valid_h ? vmax(dh - dbh, fzero) : fzero;
      if (y >= 1) {
        const vf dv = vabs(ctr - up);
        const vf dbv = vabs(load(far_dn + x) - load(far_up + x)) * inv_box;
        a_dv += valid ? dv : fzero;
        a_lv += valid ? vmax(dv - dbv, fzero) : fzero;
      }
      if (++pending == kFlush) flush();
    }
    flush();
  }
  out->lap_sum = reduce_sum_dn(t[0]);
  out->lap_sumsq = reduce_sum_dn(t[1]);
  out->tenengrad_sum = reduce_sum_dn(t[2]);
  out->diff_h = reduce_sum_dn(t[3]);
  out->lost_h = reduce_sum_dn(t[4]);
  out->diff_v = reduce_sum_dn(t[5]);
  out->lost_v = reduce_sum_dn(t[6]);
}

}  // namespace
