// features.extract() of a uint8 image in one kernel call: the first-order summary
// (summary_u8), the GLCM of the quantised image and its properties, the uniform LBP
// histogram and the Sobel gradient summary (gradient_u8), then the arithmetic of the
// Python composition (features/_extract.py, _firstorder.py) on their results, in the same
// operations and order.  Included by csrc/kernels/target.cpp after glcm.hpp, lbp.hpp and
// stats.hpp.
//
// Why one call: the appearance descriptor of the out-of-distribution guard runs extract()
// on a 64 x 64 image for every frame; as five binding calls and their Python glue it held
// the GIL for most of its ~0.2 ms, and two diagnose streams serialised on it.
//
// What is the same as the composition, bit for bit: the kernels' results (the very
// kernels extract() calls), the quantisation table (features._glcm._bins: the same float64
// operations), the angle means and every division, numpy's summation order (pairwise_sum:
// sequential below 8 terms, 8 accumulators up to 128, halves beyond).  What may differ in
// the last bit: log2 (first-order entropy) and log1p (appearance transform) come from the
// C library here, while NumPy uses its own SIMD implementations on some CPUs (AVX-512);
// both are within an ulp or two of the exact value.
#pragma once

namespace {

namespace extract {

// numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src) of a[0 .. n), plus
// the reduction's initial 0.
static double np_sum(const double* a, ptrdiff_t n) {
  if (n < 8) {
    double res = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    ptrdiff_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  ptrdiff_t n2 = n / 2;
  n2 -= n2 % 8;
  return np_sum(a, n2) + np_sum(a + n2, n - n2);
}
static inline double reduce_sum(const double* a, ptrdiff_t n) { return 0.0 + np_sum(a, n); }

// scratch carved into 64-byte aligned parts (medimg::extract_u8_scratch's order).
struct Carve {
  unsigned char* next;
  template <typename T>
  T* take(size_t count) {
    T* p = reinterpret_cast<T*>(next);
    next += medimg::extract_align(count * sizeof(T));
    return p;
  }
};

// The conversion of _appearance.appearance_features: x * 255 in float32, np.rint (half to
// even), clipped to [0, 255], cast to uint8 (NaN, which a model input never holds, gives 0).
static void unit_to_u8(const float* x, ptrdiff_t n, uint8_t* dst) {
  for (ptrdiff_t i = 0; i < n; ++i) {
    float v = __builtin_rintf(x[i] * 255.0f);
    v = v < 0.0f ? 0.0f : v;
    v = v > 255.0f ? 255.0f : v;
    dst[i] = v == v ? static_cast<uint8_t>(v) : uint8_t(0);
  }
}

// The 18 first-order values of _firstorder._firstorder_from.
static void firstorder_values(const medimg::Summary& s, const uint32_t* hist, int bins,
                              const double* q, double* out, double* tmp) {
  const double n = s.count, m2 = s.m2;
  double skewness = 0.0, kurtosis = 0.0;
  if (m2 > 0.0) {
    skewness = s.m3 / __builtin_pow(m2, 1.5);
    kurtosis = s.m4 / (m2 * m2);
  }
  // _entropy: p = hist[hist > 0] / count; -(p * log2(p)).sum(), (p * p).sum()
  ptrdiff_t np_ = 0;
  for (int b = 0; b < bins; ++b)
    if (hist[b] > 0) tmp[np_++] = static_cast<double>(hist[b]) / n;
  double* terms = tmp + np_;
  for (ptrdiff_t i = 0; i < np_; ++i) terms[i] = tmp[i] * __builtin_log2(tmp[i]);
  double entropy = -reduce_sum(terms, np_);
  for (ptrdiff_t i = 0; i < np_; ++i) terms[i] = tmp[i] * tmp[i];
  const double uniformity = reduce_sum(terms, np_);
  entropy = entropy > 0.0 ? entropy : 0.0;
  const double energy = s.sumsq;
  out[0] = s.mean;
  out[1] = m2 > 0.0 ? __builtin_sqrt(m2) : 0.0;
  out[2] = skewness;
  out[3] = kurtosis;
  out[4] = entropy;
  out[5] = uniformity;
  out[6] = energy;
  out[7] = __builtin_sqrt(energy / n);
  out[8] = s.min;
  out[9] = q[0];   // p10
  out[10] = q[2];  // p50
  out[11] = q[4];  // p90
  out[12] = s.max;
  out[13] = s.max - s.min;
  out[14] = q[3] - q[1];  // p75 - p25
  out[15] = s.absdev;
  out[16] = s.mad;
  out[17] = s.rmad;
}

// features._glcm._bins on every uint8 value: the quantisation table of quantize(image,
// levels, vmin=lo, vmax=hi).
static void quantize_table(int levels, double lo, double hi, uint8_t* table) {
  const double L = static_cast<double>(levels);
  const double scale = hi > lo ? L / (hi - lo) : __builtin_inf();
  const bool finite = scale - scale == 0.0;
  for (int v = 0; v < 256; ++v) {
    double x = static_cast<double>(v);
    if (finite) {
      x -= lo;
      x *= scale;
      x = __builtin_floor(x);
      x = x < 0.0 ? 0.0 : (x > L - 1.0 ? L - 1.0 : x);
    } else {
      x = x <= lo ? 0.0 : L - 1.0;
    }
    table[v] = static_cast<uint8_t>(x);
  }
}

// quantize(img, levels, vmin=lo, vmax=hi) of every pixel: the table's float64 formula
// evaluated in double lanes (the same operations on the same operands, so the same
// levels; 1.5x faster than the table lookup at 512x512, which the compiler cannot
// vectorise).  floor(x) is the round-to-nearest of x (adding and subtracting 1.5 * 2^52,
// exact for |x| < 2^51; here |x| <= 256 * 256) minus one where that rounded up.
static void quantize_image(const uint8_t* img, ptrdiff_t n, int levels, double lo, double hi,
                           const uint8_t* table, uint8_t* q) {
  using namespace simd;
  const double scale = hi > lo ? static_cast<double>(levels) / (hi - lo) : __builtin_inf();
  ptrdiff_t i = 0;
  if (scale - scale == 0.0) {
    const vdn vlo = set1dn(lo), vs = set1dn(scale), magic = set1dn(6755399441055744.0);
    const vdn one = set1dn(1.0), zero = set1dn(0.0), top = set1dn(levels - 1.0);
    for (; i + kLanes <= n; i += kLanes) {
      const vf f = to_float(load_u8(img + i));
      vdn h[2] = {f2d_lo(f), kLanes > 1 ? f2d_hi(f) : set1dn(0.0)};
      for (vdn& x : h) {
        x = (x - vlo) * vs;
        vdn r = (x + magic) - magic;
        r = r > x ? r - one : r;
        r = r < zero ? zero : r;
        x = r > top ? top : r;
      }
      store_narrow8<uint8_t>(q + i, to_int(dn2f(h[0], h[1])));
    }
  }
  for (; i < n; ++i) q[i] = table[img[i]];
}

}  // namespace extract

static bool extract_u8_kernel(const medimg::ExtractU8Args& a, double* values,
                              unsigned char* scratch) {
  using namespace extract;
  const ptrdiff_t rows = a.rows, cols = a.cols, n = rows * cols;
  const int L = a.levels, nd = a.n_dist, na = a.n_angle, K = nd * na, P = a.lbp_P;
  Carve cv{scratch};
  uint8_t* own = cv.take<uint8_t>(static_cast<size_t>(n));
  double* fo_tmp = cv.take<double>(2 * static_cast<size_t>(a.firstorder_bins));
  uint8_t* q = cv.take<uint8_t>(static_cast<size_t>(n));
  uint32_t* sscratch = cv.take<uint32_t>(4 * 257);
  uint32_t* counts = cv.take<uint32_t>(medimg::glcm_out_words(L, K));
  double* pscratch = cv.take<double>(medimg::glcm_props_scratch(L));
  double* props = cv.take<double>(static_cast<size_t>(medimg::kGlcmProps) * K);
  const ptrdiff_t pad = medimg::lbp_pad(a.cp, P, cols);
  double* lscratch = cv.take<double>(medimg::lbp_scratch(cols, P, pad));
  uint32_t* lhist = cv.take<uint32_t>(2 * static_cast<size_t>(P + 2));
  uint32_t* gscratch = cv.take<uint32_t>(medimg::gradient_u8_scratch(rows, cols));

  const uint8_t* img = a.image;
  if (a.unit != nullptr) {
    unit_to_u8(a.unit, n, own);
    img = own;
  }
  double* out = values;

  // First order: summary(img, bins, q = (10, 25, 50, 75, 90) / 100, mad, rmad (0.1, 0.9)).
  const double quantiles[5] = {10.0 / 100.0, 25.0 / 100.0, 50.0 / 100.0, 75.0 / 100.0,
                               90.0 / 100.0};
  double qout[5];
  uint32_t fo_hist[medimg::kStatsMaxBins];
  medimg::SummaryRequest rq{};
  rq.mask = nullptr;
  rq.bins = a.firstorder_bins;
  rq.hist = fo_hist;
  rq.nq = 5;
  rq.q = quantiles;
  rq.qout = qout;
  rq.mad = 1;
  rq.rmad_lo = 0.1;
  rq.rmad_hi = 0.9;
  rq.below = rq.above = 0.0f;
  medimg::Summary s{};
  summary_u8_kernel(img, n, &rq, &s, sscratch);
  firstorder_values(s, fo_hist, a.firstorder_bins, qout, out, fo_tmp);
  out += medimg::kExtractFirstorder;

  // GLCM: quantize between the first-order min and max, symmetric counts, properties,
  // the mean over the angles with pixel pairs (NaN for a distance with none).
  uint8_t table[256];
  quantize_table(L, s.min, s.max, table);
  quantize_image(img, n, L, s.min, s.max, table, q);
  medimg::GlcmArgs g{q, medimg::kGlcmU8, rows, cols, L, K, a.dr, a.dc, 1, counts};
  int64_t max_value = 0;
  if (!glcm_count_kernel(g, &max_value)) return false;  // not reached: q < L
  const ptrdiff_t stride = medimg::glcm_matrix_stride(L);
  if (!glcm_props_kernel(counts, 0, medimg::kGlcmNeedAll, L, K, stride, props, pscratch))
    return false;  // not reached: counts are finite and >= 0
  bool has[medimg::kExtractMaxDistances * medimg::kExtractMaxAngles];
  for (int k = 0; k < K; ++k) {
    const uint32_t* m = counts + k * stride;
    uint64_t total = 0;
    for (ptrdiff_t c = 0; c < ptrdiff_t(L) * L; ++c) total += m[c];
    has[k] = total > 0;
  }
  for (int p = 0; p < medimg::kGlcmProps; ++p) {
    for (int d = 0; d < nd; ++d) {
      double vals[medimg::kExtractMaxAngles];
      int64_t cnt = 0;
      for (int j = 0; j < na; ++j) {
        const int k = d * na + j;
        vals[j] = has[k] ? props[p * K + k] : 0.0;
        cnt += has[k] ? 1 : 0;
      }
      // vals.sum(axis=2) / n (an int64 count: a float64 division), NaN where n == 0
      out[p * nd + d] =
          cnt > 0 ? reduce_sum(vals, na) / static_cast<double>(cnt) : __builtin_nan("");
    }
  }
  out += medimg::kGlcmProps * nd;

  // Uniform LBP histogram (lbp_histogram's kernel call), as fractions of the pixels.
  medimg::LbpArgs l{};
  l.image = img;
  l.dtype = medimg::kLbpU8;
  l.rows = rows;
  l.cols = cols;
  l.P = P;
  l.method = medimg::kLbpUniform;
  l.rp = a.rp;
  l.cp = a.cp;
  l.max_abs = 1e15;
  l.pad = pad;
  l.hlen = medimg::lbp_hlen(cols);
  l.stride = medimg::lbp_stride(cols, pad);
  l.scratch = lscratch;
  l.out = nullptr;
  l.mask = nullptr;
  l.nbins = P + 2;
  l.hist = lhist;
  for (int k = 0; k < 2 * (P + 2); ++k) lhist[k] = 0;
  if (!lbp_kernel(l)) return false;  // not reached: uint8 values are finite
  const double total = static_cast<double>(n);
  for (int k = 0; k < P + 2; ++k) out[k] = static_cast<double>(lhist[k] + lhist[P + 2 + k]) / total;
  out += P + 2;

  // Gradients: gradient_summary(img, bins, q = 0.9); the histogram normalised to sum 1.
  const double p90 = 0.9;
  double gq = 0.0, moments[3];
  double ghist[medimg::kGradientMaxBins];
  const int gb = a.gradient_bins;
  gradient_u8_kernel(img, nullptr, rows, cols, gb, 1, &p90, &gq, ghist, moments, gscratch);
  const double gtotal = reduce_sum(ghist, gb);
  out[0] = moments[1];
  out[1] = moments[2] > 0.0 ? __builtin_sqrt(moments[2]) : 0.0;
  out[2] = gq;
  for (int b = 0; b < gb; ++b) out[3 + b] = gtotal > 0.0 ? ghist[b] / gtotal : 0.0;

  if (a.appearance != 0) {
    // sign(v) log1p(10 |v|), non-finite values 0 first.
    const ptrdiff_t nv = medimg::extract_u8_values(nd, P, gb);
    for (ptrdiff_t i = 0; i < nv; ++i) {
      double v = values[i];
      v = v - v == 0.0 ? v : 0.0;
      values[i] = v > 0.0 ? __builtin_log1p(10.0 * v) : (v < 0.0 ? -__builtin_log1p(10.0 * -v) : v);
    }
  }
  return true;
}

}  // namespace
