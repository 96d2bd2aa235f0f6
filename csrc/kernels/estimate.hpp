// Noise-parameter estimation: the defaults of the speckle filters (estimate_speckle) and of
// the X-ray preset (estimate_poisson_gaussian).  Included by csrc/kernels/target.cpp after
// stats.hpp (it uses radix_select).
//
// speckle_cv_kernel: the median, over the pixels (2i, 2j) whose local mean is above 1 % of
// the largest such local mean, of the local coefficient of variation sqrt(v) / m in a
// window x window neighbourhood (reflect-101 border): medimg_edge.denoise.estimate_speckle.
// Two passes over the image's even rows, no padded copy:
//   1. per even row: vertical window sums of (x - shift) and (x - shift)^2 for every column,
//      read straight from the (reflected) input rows and computed afresh for every row (no
//      running sums, so no cancellation carried from one row to the next); the row of sums
//      is extended by reflection (column sums commute with the column reflection) and split
//      into its even and odd entries, so that the horizontal window sums, m, v and sqrt(v)/m
//      are computed for the even columns only, on contiguous vectors;
//   2. the one or two middle ranks of the selected values found exactly by median_pair (a
//      value-range histogram, then the few values of the wanted bins; O(n), no sort).
// The shift (the mean of the middle row, as in the local-statistics filters) keeps
// E[(x-s)^2] - E[x-s]^2 well conditioned.  The median of an even count is
// float32(a + b) / 2, NumPy's median of a float32 array.
//
// masked_quantile_kernel: numpy.percentile of the masked values by the same selection
// (used by gradient_summary for the 90th percentile of the gradient magnitudes).
//
// noise_tiles_kernel: the block x block tile sums behind estimate_poisson_gaussian: for the
// interior pixels [1, 1 + tr*block) x [1, 1 + tc*block), the mean over each tile of r^2 with
// r = (I * N) / 6 (N the Immerkaer mask) and of the 3x3 box mean.  Both stencils stay
// inside the image, so no border is needed.  r and the box mean are computed in float32
// (as the NumPy reference, which uses cv2.filter2D and cv2.blur), squared and summed in
// double.
#pragma once

namespace {

// Vertical window sums over rows rows_[0..window) of (x - shift) and its square, for
// columns [0, cols), into s1[r + x], s2[r + x]; then the r columns on each side by
// reflect-101 of the column index.
static inline void speckle_column_sums(const float* const* rowp, int window, ptrdiff_t cols, int r,
                                       float shift, float* s1, float* s2) {
  using namespace simd;
  const vf vs = set1(shift);
  ptrdiff_t x = 0;
  // Four columns of vectors at a time: four independent add chains hide the add latency
  // (one chain would wait for each add before the next row's).
  for (; x + 4 * kLanes <= cols; x += 4 * kLanes) {
    vf a[4], b[4];
    for (int j = 0; j < 4; ++j) {
      const vf v = load(rowp[0] + x + j * kLanes) - vs;
      a[j] = v;
      b[j] = v * v;
    }
    for (int k = 1; k < window; ++k) {
      const float* row = rowp[k] + x;
      for (int j = 0; j < 4; ++j) {
        const vf v = load(row + j * kLanes) - vs;
        a[j] += v;
        b[j] = fmadd(v, v, b[j]);
      }
    }
    for (int j = 0; j < 4; ++j) {
      store(s1 + r + x + j * kLanes, a[j]);
      store(s2 + r + x + j * kLanes, b[j]);
    }
  }
  for (; x + kLanes <= cols; x += kLanes) {
    vf v = load(rowp[0] + x) - vs;
    vf a = v, b = v * v;
    for (int k = 1; k < window; ++k) {
      v = load(rowp[k] + x) - vs;
      a += v;
      b = fmadd(v, v, b);
    }
    store(s1 + r + x, a);
    store(s2 + r + x, b);
  }
  for (; x < cols; ++x) {
    float v = rowp[0][x] - shift;
    float a = v, b = v * v;
    for (int k = 1; k < window; ++k) {
      v = rowp[k][x] - shift;
      a += v;
      b = lane(fmadd(set1(v), set1(v), set1(b)), 0);
    }
    s1[r + x] = a;
    s2[r + x] = b;
  }
  for (ptrdiff_t j = 1; j <= r; ++j) {
    s1[r - j] = s1[r + reflect101(-j, cols)];
    s2[r - j] = s2[r + reflect101(-j, cols)];
    s1[r + cols - 1 + j] = s1[r + reflect101(cols - 1 + j, cols)];
    s2[r + cols - 1 + j] = s2[r + reflect101(cols - 1 + j, cols)];
  }
}

// ---- exact selection of two order statistics (median_pair, masked_quantile) ----------
constexpr int kSelBins = 2048;

// Selectors of the values taking part (vector and scalar forms).
struct SelAbove {  // sel[i] > thr
  const float* sel;
  float thr;
  simd::vi vec(ptrdiff_t i) const { return simd::load(sel + i) > simd::set1(thr); }
  bool one(ptrdiff_t i) const { return sel[i] > thr; }
};
struct SelMask {  // mask[i] != 0, or every value without a mask
  const uint8_t* mask;
  simd::vi vec(ptrdiff_t i) const {
    return mask != nullptr ? (simd::load_u8(mask + i) != simd::vi{}) : (simd::vi{} == simd::vi{});
  }
  bool one(ptrdiff_t i) const { return mask == nullptr || mask[i] != 0; }
};

// Number, minimum and maximum of the selected values (one SIMD pass).
template <typename Sel>
static ptrdiff_t count_min_max(const float* v, const Sel& sel, ptrdiff_t total, float* mn_out,
                               float* mx_out) {
  using namespace simd;
  const vf inf = set1(__builtin_huge_valf());
  const vi one = vi{} + 1, zero_i = vi{};
  vf vmn = inf, vmx = -inf;
  vi vcount = zero_i;
  ptrdiff_t i = 0;
  for (; i + kLanes <= total; i += kLanes) {
    const vf x = load(v + i);
    const vi ok = sel.vec(i);
    vmn = vmin(vmn, ok ? x : inf);
    vmx = vmax(vmx, ok ? x : -inf);
    vcount += ok ? one : zero_i;
  }
  float mn = __builtin_huge_valf(), mx = -__builtin_huge_valf();
  ptrdiff_t n = 0;
  for (int l = 0; l < kLanes; ++l) {
    mn = lane(vmn, l) < mn ? lane(vmn, l) : mn;
    mx = lane(vmx, l) > mx ? lane(vmx, l) : mx;
    n += lane_i(vcount, l);
  }
  for (; i < total; ++i)
    if (sel.one(i)) {
      mn = v[i] < mn ? v[i] : mn;
      mx = v[i] > mx ? v[i] : mx;
      ++n;
    }
  *mn_out = mn;
  *mx_out = mx;
  return n;
}

// The values of ranks k1 <= k2 among the n selected values v[i] (all finite; min mn, max
// mx), exactly, without compacting them first:
//   1. one SIMD pass writes each value's bin floor((v - mn) * 2048 / (mx - mn)) (kSelBins
//      for an unselected value), and a scalar pass counts the bins into four interleaved
//      sub-histograms (equal neighbouring bins do not chain on one counter), summed with
//      SIMD adds.  The bin is monotonic in v (float subtraction and scaling by a positive
//      constant preserve order), so the wanted ranks fall in known bins;
//   2. the values of those bins are gathered (typically a few hundred) and ordered: by
//      insertion when few, else by radix_select.
// u: summary_scratch(total) words (hist, bucket maps, keys).
template <typename Sel>
static void select_ranks(const float* v, const Sel& sel, ptrdiff_t total, float mn, float mx,
                         ptrdiff_t k1, ptrdiff_t k2, uint32_t* u, float* lo_out, float* hi_out) {
  using namespace simd;
  if (!(mx > mn)) {
    *lo_out = *hi_out = mn;
    return;
  }
  ptrdiff_t i = 0;
  const float scale = static_cast<float>(kSelBins) / (mx - mn);
  RadixScratch sc;
  sc.hist = u;
  sc.wanted = reinterpret_cast<uint8_t*>(u + 65536);
  sc.keys = u + 65536 + 20480;
  uint32_t* keys = sc.keys;  // first the bin of every value, then the candidates' keys
  {
    const vf vmn2 = set1(mn), vscale = set1(scale);
    const vi top_bin = vi{} + (kSelBins - 1), none = vi{} + kSelBins;
    for (; i + kLanes <= total; i += kLanes) {
      const vi b = to_int((load(v + i) - vmn2) * vscale);
      const vi c = sel.vec(i) ? (b < top_bin ? b : top_bin) : none;
      __builtin_memcpy(keys + i, &c, sizeof c);
    }
    for (; i < total; ++i) {
      const int b = static_cast<int>((v[i] - mn) * scale);
      keys[i] = sel.one(i) ? static_cast<uint32_t>(b < kSelBins ? b : kSelBins - 1)
                           : static_cast<uint32_t>(kSelBins);
    }
  }
  constexpr int kH = kSelBins + kLanes;  // one sub-histogram: the bins, the "none" slot
  uint32_t* h = u;                       // 4 x kH
  zero_u32(h, 4 * kH);
  i = 0;
  for (; i + 4 <= total; i += 4) {
    ++h[keys[i]];
    ++h[kH + keys[i + 1]];
    ++h[2 * kH + keys[i + 2]];
    ++h[3 * kH + keys[i + 3]];
  }
  for (; i < total; ++i) ++h[keys[i]];
  for (int b = 0; b < kSelBins; b += kLanes) {
    vi a, c1, c2, c3;
    __builtin_memcpy(&a, h + b, sizeof a);
    __builtin_memcpy(&c1, h + kH + b, sizeof a);
    __builtin_memcpy(&c2, h + 2 * kH + b, sizeof a);
    __builtin_memcpy(&c3, h + 3 * kH + b, sizeof a);
    a += (c1 + c2) + c3;
    __builtin_memcpy(h + b, &a, sizeof a);
  }
  uint32_t b1 = kSelBins, b2 = kSelBins;
  ptrdiff_t below = 0, cum = 0;
  for (uint32_t b = 0; b < kSelBins && b2 == kSelBins; ++b) {
    const ptrdiff_t c = static_cast<ptrdiff_t>(h[b]);
    if (b1 == kSelBins && k1 < cum + c) {
      b1 = b;
      below = cum;
    }
    if (k2 < cum + c) b2 = b;
    cum += c;
  }
  // Candidates: the values in bins b1 .. b2 (usually one bin), compacted in place over
  // the bins (keys[c] is written after keys[i] is read, c <= i).
  // Whole vectors of bins outside b1 .. b2 (almost all) are skipped with one test.
  ptrdiff_t c = 0;
  const uint32_t span = b2 - b1;
  const vi vb1 = vi{} + static_cast<int32_t>(b1), vb2 = vi{} + static_cast<int32_t>(b2);
  for (i = 0; i + kLanes <= total; i += kLanes) {
    vi k;  // bins <= kSelBins: non-negative as int32
    __builtin_memcpy(&k, keys + i, sizeof k);
    if (!any_lane((k >= vb1) & (k <= vb2))) continue;
    for (int l = 0; l < kLanes; ++l)  // keys[c] (c <= i + l) is not a lane still to read
      if (keys[i + l] - b1 <= span) keys[c++] = stats_key(v[i + l]);
  }
  for (; i < total; ++i)
    if (keys[i] - b1 <= span) keys[c++] = stats_key(v[i]);  // unsigned: b1 <= bin <= b2
  const ptrdiff_t r1 = k1 - below, r2 = k2 - below;
  if (c <= 256) {
    for (ptrdiff_t a = 1; a < c; ++a) {
      const uint32_t key = keys[a];
      ptrdiff_t j = a;
      for (; j > 0 && keys[j - 1] > key; --j) keys[j] = keys[j - 1];
      keys[j] = key;
    }
    *lo_out = stats_unkey(keys[r1]);
    *hi_out = stats_unkey(keys[r2]);
    return;
  }
  RankSet rs;
  rs.add(r1);
  rs.add(r2);
  uint32_t out[kStatsMaxRanks];
  radix_select(sc, c, 0.0, rs, out);
  *lo_out = stats_unkey(out[0]);
  *hi_out = stats_unkey(out[rs.n - 1]);
}

// The values of ranks (n - 1) / 2 and n / 2 of the n values v[i] with sel[i] > thr among
// v[0..total).  Returns n (0: no value; lo, hi untouched).
static ptrdiff_t median_pair(const float* v, const float* sel, float thr, ptrdiff_t total,
                             uint32_t* u, float* lo_out, float* hi_out) {
  const SelAbove s{sel, thr};
  float mn, mx;
  const ptrdiff_t n = count_min_max(v, s, total, &mn, &mx);
  if (n == 0) return 0;
  select_ranks(v, s, total, mn, mx, (n - 1) / 2, n / 2, u, lo_out, hi_out);
  return n;
}

// numpy.percentile(v[mask != 0], 100 q) (method "linear") of n float32 values, exactly
// (the order statistics by select_ranks, NumPy's interpolation); NaN if none is selected.
// u: summary_scratch(n) words.
static double masked_quantile_kernel(const float* v, const uint8_t* mask, ptrdiff_t n, double q,
                                     uint32_t* u) {
  const SelMask s{mask};
  float mn, mx;
  const ptrdiff_t count = count_min_max(v, s, n, &mn, &mx);
  if (count == 0) return __builtin_nan("");
  int64_t lo, hi;
  double gamma;
  percentile_ranks(static_cast<double>(count), q, &lo, &hi, &gamma);
  float a, b;
  select_ranks(v, s, n, mn, mx, lo, hi, u, &a, &b);
  return lo == hi ? static_cast<double>(a)
                  : np_lerp(static_cast<double>(a), static_cast<double>(b), gamma);
}

// e[l] = s[2 l], o[l] = s[2 l + 1] for l < kLanes (reads s[0 .. 2 kLanes)): two loads and
// two lane permutations (the hardware gathers they replace cost ~4x as much).
static inline void split_even_odd(const float* s, float* e, float* o) {
#if defined(MEDIMG_TARGET_AVX512)
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 a = _mm512_loadu_ps(s), b = _mm512_loadu_ps(s + 16);
  _mm512_storeu_ps(e, _mm512_permutex2var_ps(a, ie, b));
  _mm512_storeu_ps(o, _mm512_permutex2var_ps(a, io, b));
#elif defined(MEDIMG_TARGET_AVX2)
  const __m256 a = _mm256_loadu_ps(s), b = _mm256_loadu_ps(s + 8);
  // (a0 a2 b0 b2 | a4 a6 b4 b6), then the 64-bit quarters in the order 0, 2, 1, 3.
  const __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  const __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  _mm256_storeu_ps(e, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8)));
  _mm256_storeu_ps(o, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), 0xD8)));
#elif defined(MEDIMG_TARGET_SSE4)
  const __m128 a = _mm_loadu_ps(s), b = _mm_loadu_ps(s + 4);
  _mm_storeu_ps(e, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
  _mm_storeu_ps(o, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
#elif defined(MEDIMG_TARGET_NEON)
  const float32x4_t a = vld1q_f32(s), b = vld1q_f32(s + 4);
  vst1q_f32(e, vuzp1q_f32(a, b));
  vst1q_f32(o, vuzp2q_f32(a, b));
#else
  for (int l = 0; l < simd::kLanes; ++l) {
    e[l] = s[2 * l];
    o[l] = s[2 * l + 1];
  }
#endif
}

static double speckle_cv_kernel(const float* in, ptrdiff_t rows, ptrdiff_t cols, int window,
                                float* fscratch, uint32_t* uscratch) {
  using namespace simd;
  const int r = window / 2;
  const ptrdiff_t stride = medimg::padded_stride(cols, r);
  const ptrdiff_t srows = (rows + 1) / 2, scols = (cols + 1) / 2;
  // Sum rows (cols + 2r used), their even / odd halves, and the subsampled outputs.
  const ptrdiff_t half = stride / 2 + kLanes;
  float* s1 = fscratch;
  float* s2 = s1 + stride;
  float* e1 = s2 + stride;
  float* o1 = e1 + half;
  float* e2 = o1 + half;
  float* o2 = e2 + half;
  float* sub_m = o2 + half;
  float* sub_cv = sub_m + srows * scols;
  // Entries past the filled part of the half rows are read by the last vector's tail
  // lanes (whose results are discarded): keep them finite.
  for (ptrdiff_t i = 0; i < 4 * half; ++i) e1[i] = 0.0f;
  const ptrdiff_t ne = (cols + 2 * r + 1) / 2, no = (cols + 2 * r) / 2;
  const float shift = mean_of(in + (rows / 2) * cols, cols);
  const float inv_n = 1.0f / static_cast<float>(window * window);
  const vf zero = set1(0.0f), tiny = set1(1e-30f);
  const vi iota = stats_iota();
  const float* rowp[medimg::kMaxWindow];
  vf vtop = zero;
  for (ptrdiff_t y = 0; y < rows; y += 2) {
    for (int k = 0; k < window; ++k) rowp[k] = in + reflect101(y - r + k, rows) * cols;
    speckle_column_sums(rowp, window, cols, r, shift, s1, s2);
    // The window at even column 2i spans sum entries 2i .. 2i + 2r: the even entries
    // e[i .. i + r] and the odd entries o[i .. i + r - 1].
    ptrdiff_t i0 = 0;
    for (; i0 + kLanes <= no; i0 += kLanes) {
      split_even_odd(s1 + 2 * i0, e1 + i0, o1 + i0);
      split_even_odd(s2 + 2 * i0, e2 + i0, o2 + i0);
    }
    for (ptrdiff_t i = i0; i < no; ++i) {
      e1[i] = s1[2 * i];
      o1[i] = s1[2 * i + 1];
      e2[i] = s2[2 * i];
      o2[i] = s2[2 * i + 1];
    }
    if (ne > no) {
      e1[no] = s1[2 * no];
      e2[no] = s2[2 * no];
    }
    float* om = sub_m + (y / 2) * scols;
    float* oc = sub_cv + (y / 2) * scols;
    for (ptrdiff_t i = 0; i < scols; i += kLanes) {
      vf a = load(e1 + i), b = load(e2 + i);
      for (int j = 1; j <= r; ++j) {
        a += load(e1 + i + j) + load(o1 + i + j - 1);
        b += load(e2 + i + j) + load(o2 + i + j - 1);
      }
      const vf mean = a * inv_n;
      const vf var = vmax(b * inv_n - mean * mean, zero);
      const vf m = mean + shift;
      const vf cv = vsqrt(var) / vmax(m, tiny);
      const vf mk = (iota + static_cast<int32_t>(i)) < static_cast<int32_t>(scols) ? m : zero;
      vtop = vmax(vtop, mk);
      store_row(om, m, i, scols);
      store_row(oc, cv, i, scols);
    }
  }
  float top = 0.0f;
  for (int l = 0; l < kLanes; ++l) top = lane(vtop, l) > top ? lane(vtop, l) : top;
  if (!(top > 0.0f)) return 0.0;
  // numpy compares the float32 means with the Python float 0.01 * top rounded to float32.
  const float thr = static_cast<float>(0.01 * static_cast<double>(top));
  const ptrdiff_t nsub = srows * scols;
  float lo = 0.0f, hi = 0.0f;
  const ptrdiff_t n = median_pair(sub_cv, sub_m, thr, nsub, uscratch, &lo, &hi);
  if (n == 0) return 0.0;
  if (n % 2 == 1) return static_cast<double>(hi);
  const float sum = lo + hi;  // float32 add, then an exact halving: numpy.median
  return static_cast<double>(sum / 2.0f);
}

static void noise_tiles_kernel(const float* in, ptrdiff_t rows, ptrdiff_t cols, int block,
                               double* tile_var, double* tile_mean, double* acc) {
  using namespace simd;
  const ptrdiff_t tr = (rows - 2) / block, tc = (cols - 2) / block;
  const ptrdiff_t w = tc * block;  // interior columns used: [1, 1 + w)
  double* a_r2 = acc;
  double* a_m = acc + w;
  const double cells = static_cast<double>(block * block);
  const vf sixth = set1(6.0f);
  for (ptrdiff_t t = 0; t < tr; ++t) {
    for (ptrdiff_t x = 0; x < 2 * w; ++x) acc[x] = 0.0;
    for (ptrdiff_t y = 1 + t * block; y < 1 + (t + 1) * block; ++y) {
      const float* n = in + (y - 1) * cols;
      const float* c = n + cols;
      const float* s = c + cols;
      ptrdiff_t x = 1;
      for (; x + kLanes <= 1 + w; x += kLanes) {
        const vf nw = load(n + x - 1), nn = load(n + x), ne = load(n + x + 1);
        const vf cw = load(c + x - 1), cc = load(c + x), ce = load(c + x + 1);
        const vf sw = load(s + x - 1), ss = load(s + x), se = load(s + x + 1);
        const vf corners = (nw + ne) + (sw + se);
        const vf edges = (nn + ss) + (cw + ce);
        const vf rr = (corners - 2.0f * edges + 4.0f * cc) / sixth;
        const vf box = ((nw + nn + ne) + (cw + cc + ce)) + (sw + ss + se);
        const vdn bl = f2d_lo(box) * (1.0 / 9.0);
        vdn bh = set1dn(0.0);
        if (kLanes > 1) bh = f2d_hi(box) * (1.0 / 9.0);
        const vf mf = dn2f(bl, bh);  // the box mean rounded to float32, as cv2.blur
        double* pr = a_r2 + (x - 1);
        double* pm = a_m + (x - 1);
        const vdn rl = f2d_lo(rr), ml = f2d_lo(mf);
        store_dn(pr, load_dn(pr) + rl * rl);
        store_dn(pm, load_dn(pm) + ml);
        if (kLanes > 1) {
          const vdn rh = f2d_hi(rr), mh = f2d_hi(mf);
          store_dn(pr + kLanesD, load_dn(pr + kLanesD) + rh * rh);
          store_dn(pm + kLanesD, load_dn(pm + kLanesD) + mh);
        }
      }
      for (; x < 1 + w; ++x) {
        const float corners = (n[x - 1] + n[x + 1]) + (s[x - 1] + s[x + 1]);
        const float edges = (n[x] + s[x]) + (c[x - 1] + c[x + 1]);
        const float rr = (corners - 2.0f * edges + 4.0f * c[x]) / 6.0f;
        const float box = ((n[x - 1] + n[x] + n[x + 1]) + (c[x - 1] + c[x] + c[x + 1])) +
                          (s[x - 1] + s[x] + s[x + 1]);
        const float mf = static_cast<float>(static_cast<double>(box) * (1.0 / 9.0));
        a_r2[x - 1] += static_cast<double>(rr) * static_cast<double>(rr);
        a_m[x - 1] += static_cast<double>(mf);
      }
    }
    for (ptrdiff_t j = 0; j < tc; ++j) {
      double sv = 0.0, sm = 0.0;
      for (int k = 0; k < block; ++k) {
        sv += a_r2[j * block + k];
        sm += a_m[j * block + k];
      }
      tile_var[t * tc + j] = sv / cells;
      tile_mean[t * tc + j] = sm / cells;
    }
  }
}

}  // namespace
