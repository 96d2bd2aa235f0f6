// Quality-gate kernels (src/medimg_edge/quality.py, rules in quality.assess's docstring),
// on the analysis image u (the frame area-averaged to the model's resolution and scaled to
// its nominal range):
//
//   quality_bands_kernel   uniform border bands (collimator shadows, shutters, padding)
//   quality_region_kernel  field of view, annotation strokes (white top-hat), the statistics
//                          mask, the eroded field of view, Immerkaer noise, mean / standard
//                          deviation, the 1024-bin quantiles, saturated / underexposed
//                          counts and the mask of allowed edge points: one call
//   quality_edges_kernel   the two-scale gradient-ratio edge statistics: two cascaded
//                          Gaussian blurs, 3x3 Sobel / 8 magnitudes, non-maximum suppression
//                          in 4 directions, the strongest fraction of the edge points (a
//                          256-bin histogram of |g_b|) and the means of |g_b|^2, |g_a|^2
//
// They reproduce the OpenCV / NumPy formulation (kept as the reference in
// tests/quality_helpers.py): reflect-101 borders for the blurs, Sobel and Immerkaer,
// morphology windows clipped at the image border (OpenCV's default border for erode /
// dilate), erosion of the field of view with a zero border.  Blurs, gradients and window
// minima / maxima are vectorised over columns without FMA (so every target computes the
// same floats as the scalar path); the per-point work runs on the few candidate pixels.
// Included by csrc/kernels/target.cpp after common.hpp and noise.hpp.
#pragma once

namespace {

// 64-byte aligned carving of a float scratch buffer.
struct QgCarve {
  float* p;
  template <typename T>
  T* take(size_t n) {
    T* out = reinterpret_cast<T*>(p);
    const size_t floats = (n * sizeof(T) + sizeof(float) - 1) / sizeof(float);
    p += (floats + 15) / 16 * 16;
    return out;
  }
};

// ---- separable Gaussian (reflect-101), symmetric taps w[0] (centre) .. w[r] -----------------
static void qg_blur(const float* src, ptrdiff_t rows, ptrdiff_t cols, const float* w, int r,
                    float* tmp, float* pad, float* dst) {
  using namespace simd;
  for (ptrdiff_t y = 0; y < rows; ++y) {
    const float* s = src + y * cols;
    if (r < cols) {  // one reflection suffices
      for (ptrdiff_t x = 0; x < r; ++x) pad[x] = s[r - x];
      for (ptrdiff_t x = cols; x < cols + r; ++x) pad[r + x] = s[2 * cols - 2 - x];
    } else {
      for (ptrdiff_t x = 0; x < r; ++x) pad[x] = s[reflect101(x - r, cols)];
      for (ptrdiff_t x = cols; x < cols + r; ++x) pad[r + x] = s[reflect101(x, cols)];
    }
    __builtin_memcpy(pad + r, s, static_cast<size_t>(cols) * sizeof(float));
    const float* c = pad + r;
    float* d = tmp + y * cols;
    ptrdiff_t x = 0;
    for (; x + kLanes <= cols; x += kLanes) {
      vf acc = load(c + x) * w[0];
      for (int k = 1; k <= r; ++k) acc = acc + (load(c + x - k) + load(c + x + k)) * w[k];
      store(d + x, acc);
    }
    for (; x < cols; ++x) {
      float acc = c[x] * w[0];
      for (int k = 1; k <= r; ++k) acc = acc + (c[x - k] + c[x + k]) * w[k];
      d[x] = acc;
    }
  }
  const float* up[medimg::kQualityMaxRadius + 1];
  const float* dn[medimg::kQualityMaxRadius + 1];
  for (ptrdiff_t y = 0; y < rows; ++y) {
    for (int k = 0; k <= r; ++k) {
      up[k] = tmp + reflect101(y - k, rows) * cols;
      dn[k] = tmp + reflect101(y + k, rows) * cols;
    }
    float* d = dst + y * cols;
    ptrdiff_t x = 0;
    for (; x + kLanes <= cols; x += kLanes) {
      vf acc = load(up[0] + x) * w[0];
      for (int k = 1; k <= r; ++k) acc = acc + (load(up[k] + x) + load(dn[k] + x)) * w[k];
      store(d + x, acc);
    }
    for (; x < cols; ++x) {
      float acc = up[0][x] * w[0];
      for (int k = 1; k <= r; ++k) acc = acc + (up[k][x] + dn[k][x]) * w[k];
      d[x] = acc;
    }
  }
}

// 3x3 Sobel / 8 of rows n (y - 1), c (y), s (y + 1) at columns xl = x - 1, x, xr = x + 1.
template <typename T, typename Load>
static inline void qg_sobel(Load ld, const float* n, const float* c, const float* s, ptrdiff_t xl,
                            ptrdiff_t x, ptrdiff_t xr, T* gx, T* gy) {
  const T dn = ld(n + xr) - ld(n + xl), dc = ld(c + xr) - ld(c + xl), ds = ld(s + xr) - ld(s + xl);
  *gx = ((dn + ds) + dc * 2.0f) * 0.125f;
  const T vl = ld(s + xl) - ld(n + xl), vc = ld(s + x) - ld(n + x), vr = ld(s + xr) - ld(n + xr);
  *gy = ((vl + vr) + vc * 2.0f) * 0.125f;
}

// gx, gy and |g| of every pixel of b (reflect-101).
static void qg_gradient(const float* b, ptrdiff_t rows, ptrdiff_t cols, float* gx, float* gy,
                        float* mag) {
  using namespace simd;
  auto vload = [](const float* p) { return load(p); };
  auto sload = [](const float* p) { return *p; };
  for (ptrdiff_t y = 0; y < rows; ++y) {
    const float* n = b + reflect101(y - 1, rows) * cols;
    const float* c = b + y * cols;
    const float* s = b + reflect101(y + 1, rows) * cols;
    const ptrdiff_t o = y * cols;
    auto one = [&](ptrdiff_t x) {
      float fx, fy;
      qg_sobel<float>(sload, n, c, s, reflect101(x - 1, cols), x, reflect101(x + 1, cols), &fx,
                      &fy);
      gx[o + x] = fx;
      gy[o + x] = fy;
      mag[o + x] = __builtin_sqrtf(fx * fx + fy * fy);
    };
    auto block = [&](ptrdiff_t x) {
      vf vx, vy;
      qg_sobel<vf>(vload, n, c, s, x - 1, x, x + 1, &vx, &vy);
      store(gx + o + x, vx);
      store(gy + o + x, vy);
      store(mag + o + x, vsqrt(vx * vx + vy * vy));
    };
    one(0);
    ptrdiff_t x = 1;
    if (cols - 2 >= kLanes) {  // interior blocks, the last one overlapping its predecessor
      for (; x + kLanes + 1 <= cols; x += kLanes) block(x);
      if (x < cols - 1) block(cols - 1 - kLanes);
      x = cols - 1;
    }
    for (; x < cols; ++x) one(x);
  }
}

// ---- window minimum / maximum with the window clipped at the border ---------------------
template <bool kMax>
static inline float qg_pick(float a, float b) {
  return kMax ? (a > b ? a : b) : (a < b ? a : b);
}
template <bool kMax>
static inline simd::vf qg_vpick(simd::vf a, simd::vf b) {
  return kMax ? simd::vmax(a, b) : simd::vmin(a, b);
}
// dst = min (max) of src over the (2r+1) x (2r+1) window clipped to the image.
template <bool kMax>
static void qg_morph(const float* src, ptrdiff_t rows, ptrdiff_t cols, int r, float* tmp,
                     float* dst) {
  using namespace simd;
  for (ptrdiff_t y = 0; y < rows; ++y) {
    const float* s = src + y * cols;
    float* d = tmp + y * cols;
    auto one = [&](ptrdiff_t x) {
      const ptrdiff_t lo = x - r < 0 ? 0 : x - r, hi = x + r >= cols ? cols - 1 : x + r;
      float m = s[lo];
      for (ptrdiff_t k = lo + 1; k <= hi; ++k) m = qg_pick<kMax>(m, s[k]);
      d[x] = m;
    };
    auto block = [&](ptrdiff_t x) {
      vf m = load(s + x - r);
      for (int k = -r + 1; k <= r; ++k) m = qg_vpick<kMax>(m, load(s + x + k));
      store(d + x, m);
    };
    ptrdiff_t x = 0;
    for (; x < r && x < cols; ++x) one(x);
    if (cols - 2 * r >= kLanes) {  // the last block overlaps its predecessor
      for (; x + kLanes + r <= cols; x += kLanes) block(x);
      if (x < cols - r) block(cols - r - kLanes);
      x = cols - r;
    }
    for (; x < cols; ++x) one(x);
  }
  for (ptrdiff_t y = 0; y < rows; ++y) {
    const ptrdiff_t lo = y - r < 0 ? 0 : y - r, hi = y + r >= rows ? rows - 1 : y + r;
    float* d = dst + y * cols;
    ptrdiff_t x = 0;
    for (; x + kLanes <= cols; x += kLanes) {
      vf m = load(tmp + lo * cols + x);
      for (ptrdiff_t k = lo + 1; k <= hi; ++k) m = qg_vpick<kMax>(m, load(tmp + k * cols + x));
      store(d + x, m);
    }
    for (; x < cols; ++x) {
      float m = tmp[lo * cols + x];
      for (ptrdiff_t k = lo + 1; k <= hi; ++k) m = qg_pick<kMax>(m, tmp[k * cols + x]);
      d[x] = m;
    }
  }
}

// Summed-area table of (mask != 0): sat[(y + 1) * (cols + 1) + x + 1] = count in [0, y] x [0, x].
static void qg_sat(const uint8_t* mask, ptrdiff_t rows, ptrdiff_t cols, int32_t* sat) {
  const ptrdiff_t w = cols + 1;
  for (ptrdiff_t x = 0; x < w; ++x) sat[x] = 0;
  for (ptrdiff_t y = 0; y < rows; ++y) {
    int32_t run = 0;
    int32_t* row = sat + (y + 1) * w;
    const int32_t* up = row - w;
    row[0] = 0;
    for (ptrdiff_t x = 0; x < cols; ++x) {
      run += mask[y * cols + x] != 0;
      row[x + 1] = up[x + 1] + run;
    }
  }
}
static inline int32_t qg_box(const int32_t* sat, ptrdiff_t cols, ptrdiff_t y0, ptrdiff_t x0,
                             ptrdiff_t y1, ptrdiff_t x1) {  // [y0, y1) x [x0, x1)
  const ptrdiff_t w = cols + 1;
  return sat[y1 * w + x1] - sat[y0 * w + x1] - sat[y1 * w + x0] + sat[y0 * w + x0];
}

// mask = 255 inside [t, b) x [l, r) (clipped to the image), 0 elsewhere.
static void qg_rect(uint8_t* mask, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t t, ptrdiff_t b,
                    ptrdiff_t l, ptrdiff_t r) {
  t = t < 0 ? 0 : t, l = l < 0 ? 0 : l, b = b > rows ? rows : b, r = r > cols ? cols : r;
  __builtin_memset(mask, 0, static_cast<size_t>(rows * cols));
  if (b <= t || r <= l) return;
  for (ptrdiff_t y = t; y < b; ++y)
    __builtin_memset(mask + y * cols + l, 255, static_cast<size_t>(r - l));
}

// ---- border bands --------------------------------------------------------------------------
// Mean and standard deviation (sqrt(max(E[u^2] - E[u]^2, 0)), E over the float32 products
// u * u summed in double) of the rows (per_row) or columns of u[t:b, l:r].  acc: 2 (r - l)
// + 2 kLanes doubles.
static void qg_line_stats(const float* a, ptrdiff_t cols, ptrdiff_t t, ptrdiff_t b, ptrdiff_t l,
                          ptrdiff_t r, bool per_row, double* mean, double* sd, double* acc) {
  using namespace simd;
  const ptrdiff_t n = r - l;
  if (per_row) {
    const double inv = 1.0 / static_cast<double>(n);
    for (ptrdiff_t y = t; y < b; ++y) {
      const float* p = a + y * cols + l;
      vdn s_lo = set1dn(0.0), s_hi = set1dn(0.0), q_lo = set1dn(0.0), q_hi = set1dn(0.0);
      ptrdiff_t x = 0;
      for (; x + kLanes <= n; x += kLanes) {
        const vf v = load(p + x), v2 = v * v;
        s_lo += f2d_lo(v);
        q_lo += f2d_lo(v2);
        if (kLanes > 1) {
          s_hi += f2d_hi(v);
          q_hi += f2d_hi(v2);
        }
      }
      double s = reduce_sum_dn(s_lo) + (kLanes > 1 ? reduce_sum_dn(s_hi) : 0.0);
      double s2 = reduce_sum_dn(q_lo) + (kLanes > 1 ? reduce_sum_dn(q_hi) : 0.0);
      for (; x < n; ++x) {
        const float v = p[x];
        s += v;
        s2 += v * v;
      }
      const double m = s * inv, q = s2 * inv - m * m;
      mean[y - t] = m;
      sd[y - t] = __builtin_sqrt(q > 0.0 ? q : 0.0);
    }
    return;
  }
  // Strips of kLanes columns down all rows, the sums in double lanes in registers.
  double* s1 = acc;
  double* s2 = acc + n + kLanes;
  ptrdiff_t x = 0;
  for (; x + kLanes <= n; x += kLanes) {
    vdn a_lo = set1dn(0.0), a_hi = set1dn(0.0), q_lo = set1dn(0.0), q_hi = set1dn(0.0);
    for (ptrdiff_t y = t; y < b; ++y) {
      const vf v = load(a + y * cols + l + x), v2 = v * v;
      a_lo += f2d_lo(v);
      q_lo += f2d_lo(v2);
      if (kLanes > 1) {
        a_hi += f2d_hi(v);
        q_hi += f2d_hi(v2);
      }
    }
    store_dn(s1 + x, a_lo);
    store_dn(s2 + x, q_lo);
    if (kLanes > 1) {
      store_dn(s1 + x + kLanesD, a_hi);
      store_dn(s2 + x + kLanesD, q_hi);
    }
  }
  for (; x < n; ++x) {
    double c1 = 0.0, c2 = 0.0;
    for (ptrdiff_t y = t; y < b; ++y) {
      const float v = a[y * cols + l + x];
      c1 += v;
      c2 += v * v;
    }
    s1[x] = c1;
    s2[x] = c2;
  }
  const double inv = 1.0 / static_cast<double>(b - t);
  for (ptrdiff_t i = 0; i < n; ++i) {
    const double m = s1[i] * inv, q = s2[i] * inv - m * m;
    mean[i] = m;
    sd[i] = __builtin_sqrt(q > 0.0 ? q : 0.0);
  }
}

// First index from the start (reverse: from the end) that is not uniform: standard
// deviation or step from the outermost line above tol; at most min(limit, n - 1).
static ptrdiff_t qg_run(const double* mean, const double* sd, ptrdiff_t n, ptrdiff_t limit,
                        bool reverse, double tol) {
  limit = limit < n - 1 ? limit : n - 1;
  if (limit < 0) limit = 0;
  const double first = mean[reverse ? n - 1 : 0];
  for (ptrdiff_t i = 0; i < limit; ++i) {
    const ptrdiff_t j = reverse ? n - 1 - i : i;
    const double step = mean[j] - first;
    if (sd[j] > tol || (step < 0 ? -step : step) > tol) return i;
  }
  return limit;
}

// Rows / columns cut at each side (out[0..4) = top, bottom, left, right as [t, b) x [l, r)):
// up to 45 % of the side, twice.  scratch: quality_bands_scratch() doubles.
static void quality_bands_kernel(const float* a, ptrdiff_t rows, ptrdiff_t cols, double tol,
                                 ptrdiff_t* out, double* scratch) {
  const ptrdiff_t big = rows > cols ? rows : cols;
  double* mean = scratch;
  double* sd = scratch + big;
  double* acc = scratch + 2 * big;
  ptrdiff_t t = 0, b = rows, l = 0, r = cols;
  for (int pass = 0; pass < 2; ++pass) {
    const ptrdiff_t lim_r =
        static_cast<ptrdiff_t>(0.45 * static_cast<double>(rows)) - (t > rows - b ? t : rows - b);
    const ptrdiff_t lim_c =
        static_cast<ptrdiff_t>(0.45 * static_cast<double>(cols)) - (l > cols - r ? l : cols - r);
    qg_line_stats(a, cols, t, b, l, r, true, mean, sd, acc);
    const ptrdiff_t dt = qg_run(mean, sd, b - t, lim_r, false, tol);
    const ptrdiff_t db = qg_run(mean, sd, b - t, lim_r, true, tol);
    qg_line_stats(a, cols, t, b, l, r, false, mean, sd, acc);
    const ptrdiff_t dl = qg_run(mean, sd, r - l, lim_c, false, tol);
    const ptrdiff_t dr = qg_run(mean, sd, r - l, lim_c, true, tol);
    t += dt;
    b -= db;
    l += dl;
    r -= dr;
    if (b - t < 3 || r - l < 3) {
      t = 0, b = rows, l = 0, r = cols;
      break;
    }
    if (!(dt || db || dl || dr)) break;
  }
  out[0] = t;
  out[1] = b;
  out[2] = l;
  out[3] = r;
}

// ---- the region pass ----------------------------------------------------------------------
static void quality_region_kernel(const medimg::QualityRegionArgs& g, medimg::QualityRegion* out,
                                  float* scratch) {
  using namespace simd;
  const ptrdiff_t rows = g.rows, cols = g.cols, n = rows * cols;
  const float* a = g.a;
  uint8_t* fov = g.fov;
  QgCarve carve{scratch};
  float* f0 = carve.take<float>(static_cast<size_t>(n));
  float* f1 = carve.take<float>(static_cast<size_t>(n));
  int32_t* sat = carve.take<int32_t>(static_cast<size_t>((rows + 1) * (cols + 1)));
  uint8_t* strokes = carve.take<uint8_t>(static_cast<size_t>(n));
  uint8_t* stat = carve.take<uint8_t>(static_cast<size_t>(n));
  uint8_t* inner = carve.take<uint8_t>(static_cast<size_t>(n));
  uint32_t* hist = carve.take<uint32_t>(4 * medimg::kQualityHistBins);
  double* dscr = carve.take<double>(medimg::quality_bands_scratch(rows, cols));

  // Field of view.
  if (!g.fov_given) {
    ptrdiff_t box[4];
    quality_bands_kernel(a, rows, cols, g.band_tol, box, dscr);
    qg_rect(fov, rows, cols, box[0], box[1], box[2], box[3]);
    for (int i = 0; i < 4; ++i) out->band[i] = static_cast<double>(box[i]);
  } else {
    out->band[0] = out->band[2] = 0.0;
    out->band[1] = static_cast<double>(rows);
    out->band[3] = static_cast<double>(cols);
  }

  // Annotation strokes: u - opening_5x5(u) > tophat and u > level, inside the FOV.
  qg_morph<false>(a, rows, cols, 2, f1, f0);
  qg_morph<true>(f0, rows, cols, 2, f1, f0);
  ptrdiff_t n_fov = 0, n_strokes = 0, n_stat = 0;
  {
    const vf tophat = set1(g.stroke_tophat), level = set1(g.stroke_level);
    vi c_fov = vi{} + 0, c_str = vi{} + 0;
    ptrdiff_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      const vf v = load(a + i);
      const vi in = load_u8(fov + i) != 0;
      const vi st = in & ((v - load(f0 + i)) > tophat) & (v > level);
      store_narrow8<uint8_t>(strokes + i, st & 255);
      store_narrow8<uint8_t>(stat + i, (in & ~st) & 255);
      c_fov -= in;
      c_str -= st;
    }
    for (int l = 0; l < kLanes; ++l) n_fov += lane_i(c_fov, l), n_strokes += lane_i(c_str, l);
#if MEDIMG_LANES == 1
    n_fov = -n_fov, n_strokes = -n_strokes;
#endif
    for (; i < n; ++i) {
      const bool in = fov[i] != 0;
      const bool st = in && (a[i] - f0[i]) > g.stroke_tophat && a[i] > g.stroke_level;
      n_fov += in;
      n_strokes += st;
      strokes[i] = st ? 255 : 0;
      stat[i] = (in && !st) ? 255 : 0;
    }
    n_stat = n_fov - n_strokes;
  }
  const uint8_t* smask = stat;
  if (n_stat == 0) smask = fov, n_stat = n_fov;

  // The field of view eroded by a (2m + 1)^2 window, zero outside the image: the band
  // rectangle shrunk by m, or from a summed-area table of the given mask.
  const int m = g.inner_margin;
  ptrdiff_t n_inner = 0;
  if (!g.fov_given) {
    const ptrdiff_t t = static_cast<ptrdiff_t>(out->band[0]) + m,
                    b = static_cast<ptrdiff_t>(out->band[1]) - m,
                    l = static_cast<ptrdiff_t>(out->band[2]) + m,
                    r = static_cast<ptrdiff_t>(out->band[3]) - m;
    qg_rect(inner, rows, cols, t, b, l, r);
    n_inner = (b > t && r > l) ? (b - t) * (r - l) : 0;
  } else {
    qg_sat(fov, rows, cols, sat);
    const int32_t full = (2 * m + 1) * (2 * m + 1);
    for (ptrdiff_t y = 0; y < rows; ++y)
      for (ptrdiff_t x = 0; x < cols; ++x) {
        const bool in = y >= m && y + m < rows && x >= m && x + m < cols &&
                        qg_box(sat, cols, y - m, x - m, y + m + 1, x + m + 1) == full;
        inner[y * cols + x] = in ? 255 : 0;
        n_inner += in;
      }
  }

  // Immerkaer noise over the eroded FOV (>= 64 pixels), else over the interior.
  double noise = 0.0;
  if (rows >= 3 && cols >= 3) {
    const bool masked = n_inner >= 64;
    auto vload = [](const float* p) { return load(p); };
    auto sload = [](const float* p) { return *p; };
    double total = 0.0;
    vdn dt = set1dn(0.0);
    for (ptrdiff_t y = 1; y + 1 < rows; ++y) {
      const float* pn = a + (y - 1) * cols;
      const float* pc = pn + cols;
      const float* ps = pc + cols;
      const uint8_t* mk = inner + y * cols;
      vf acc = set1(0.0f);
      ptrdiff_t x = 1;
      for (; x + kLanes + 1 <= cols; x += kLanes) {
        const vf v = immerkaer_abs<vf>(vload, pn, pc, ps, x);
        acc += masked ? (load_u8(mk + x) != 0 ? v : set1(0.0f)) : v;
      }
      dt += f2d_lo(acc);
      if (kLanes > 1) dt += f2d_hi(acc);
      for (; x + 1 < cols; ++x)
        if (!masked || mk[x] != 0) total += immerkaer_abs<float>(sload, pn, pc, ps, x);
    }
    total += reduce_sum_dn(dt);
    // inner excludes the outer ring (inner_margin >= 1): its count is the masked count
    const ptrdiff_t count = masked ? n_inner : (rows - 2) * (cols - 2);
    noise = 1.2533141373155003 * (total / static_cast<double>(count)) / 6.0;
  }

  // Mean / standard deviation (shifted by the first selected value), saturated and
  // underexposed counts over the statistics mask.
  float shift = 0.0f;
  for (ptrdiff_t i = 0; i < n; ++i)
    if (smask[i] != 0) {
      shift = a[i];
      break;
    }
  double s1 = 0.0, s2 = 0.0;
  ptrdiff_t n_sat = 0, n_under = 0;
  const float hi_t = g.sat_hi, lo_t = g.sat_lo;
  vdn d1 = set1dn(0.0), d2 = set1dn(0.0);  // rows' float lanes, summed in double lanes
  vi c_hi = vi{} + 0, c_lo = vi{} + 0;
  for (ptrdiff_t y = 0; y < rows; ++y) {
    const float* pa = a + y * cols;
    const uint8_t* mk = smask + y * cols;
    vf acc1 = set1(0.0f), acc2 = set1(0.0f);
    ptrdiff_t x = 0;
    for (; x + kLanes <= cols; x += kLanes) {
      const vf v = load(pa + x);
      const vi sel = load_u8(mk + x) != 0;
      const vf d = sel ? v - shift : set1(0.0f);
      acc1 += d;
      acc2 += d * d;
      c_hi -= sel & (v >= hi_t);
      c_lo -= sel & (v <= lo_t);
    }
    d1 += f2d_lo(acc1);
    d2 += f2d_lo(acc2);
    if (kLanes > 1) {
      d1 += f2d_hi(acc1);
      d2 += f2d_hi(acc2);
    }
    for (; x < cols; ++x) {
      if (mk[x] == 0) continue;
      const float d = pa[x] - shift;
      s1 += d;
      s2 += d * d;
      n_sat += pa[x] >= hi_t;
      n_under += pa[x] <= lo_t;
    }
  }
  s1 += reduce_sum_dn(d1);
  s2 += reduce_sum_dn(d2);
  {
    ptrdiff_t ch = 0, cl = 0;
    for (int l = 0; l < kLanes; ++l) ch += lane_i(c_hi, l), cl += lane_i(c_lo, l);
#if MEDIMG_LANES == 1
    ch = -ch, cl = -cl;
#endif
    n_sat += ch;
    n_under += cl;
  }
  const double cnt = static_cast<double>(n_stat > 0 ? n_stat : 1);
  const double dm = s1 / cnt, var = s2 / cnt - dm * dm;
  out->mean = static_cast<double>(shift) + dm;
  out->std = __builtin_sqrt(var > 0.0 ? var : 0.0);

  // Quantiles: 1024-bin histogram on [0, 1 + 1e-6) (every second pixel in each direction
  // above 16384 pixels), interpolated in the bin.
  // (four interleaved copies: neighbouring pixels of a smooth image share a bin, and one
  // copy would chain their increments)
  constexpr int kB = medimg::kQualityHistBins;
  for (int i = 0; i < 4 * kB; ++i) hist[i] = 0;
  const ptrdiff_t step = n > 16384 ? 2 : 1;
  const double hscale =
      static_cast<double>(kB) / static_cast<double>(static_cast<float>(1.0 + 1e-6));
  for (ptrdiff_t y = 0; y < rows; y += step)
    for (ptrdiff_t x = 0, c = 0; x < cols; x += step, ++c) {
      const ptrdiff_t i = y * cols + x;
      if (smask[i] == 0) continue;
      const double v = static_cast<double>(a[i]) * hscale;
      if (!(v >= 0.0)) continue;
      const ptrdiff_t k = static_cast<ptrdiff_t>(v);
      if (k < kB) ++hist[(c & 3) * kB + k];
    }
  for (int i = 0; i < kB; ++i) hist[i] += hist[kB + i] + hist[2 * kB + i] + hist[3 * kB + i];
  double total = 0.0;
  for (int i = 0; i < medimg::kQualityHistBins; ++i) total += hist[i];
  const double inv_total = total > 0.0 ? 1.0 / total : 0.0;  // NumPy's cdf * (1 / total)
  for (int j = 0; j < g.nq; ++j) {
    const double q = g.q[j];
    if (total <= 0.0) {
      out->quantiles[j] = 0.0;
      continue;
    }
    double cum = 0.0, prev = 0.0, cur = 0.0;
    int i = 0;
    for (; i < medimg::kQualityHistBins; ++i) {
      prev = cum;
      cum += hist[i];
      cur = cum * inv_total;
      if (cur >= q) break;
    }
    if (i == medimg::kQualityHistBins) {  // rounding: past the last bin
      i = medimg::kQualityHistBins - 1;
      prev = (cum - hist[i]);
    }
    const double pq = prev * inv_total;
    double frac = cur > pq ? (q - pq) / (cur - pq) : 0.5;
    frac = frac < 0.0 ? 0.0 : (frac > 1.0 ? 1.0 : frac);
    out->quantiles[j] = (i + frac) / medimg::kQualityHistBins;
  }

  // Allowed edge points: the eroded FOV away from (2 k + 1)^2-dilated strokes.
  const int k = g.stroke_margin;
  if (n_strokes == 0) {
    __builtin_memcpy(g.allowed, inner, static_cast<size_t>(n));
  } else {
    qg_sat(strokes, rows, cols, sat);
    for (ptrdiff_t y = 0; y < rows; ++y)
      for (ptrdiff_t x = 0; x < cols; ++x) {
        bool ok = inner[y * cols + x] != 0;
        if (ok) {
          const ptrdiff_t y0 = y - k < 0 ? 0 : y - k, y1 = y + k + 1 > rows ? rows : y + k + 1;
          const ptrdiff_t x0 = x - k < 0 ? 0 : x - k, x1 = x + k + 1 > cols ? cols : x + k + 1;
          ok = qg_box(sat, cols, y0, x0, y1, x1) == 0;
        }
        g.allowed[y * cols + x] = ok ? 255 : 0;
      }
  }

  out->n_fov = static_cast<double>(n_fov);
  out->n_strokes = static_cast<double>(n_strokes);
  out->n_stat = static_cast<double>(n_stat);
  out->n_inner = static_cast<double>(n_inner);
  out->noise_sigma = noise;
  out->n_sat = static_cast<double>(n_sat);
  out->n_under = static_cast<double>(n_under);
}

// ---- the edge pass -------------------------------------------------------------------------
static void quality_edges_kernel(const medimg::QualityEdgeArgs& g, medimg::QualityEdges* out,
                                 float* scratch) {
  const ptrdiff_t rows = g.rows, cols = g.cols, n = rows * cols;
  QgCarve carve{scratch};
  float* tmp = carve.take<float>(static_cast<size_t>(n));
  float* ba = carve.take<float>(static_cast<size_t>(n));
  float* bb = carve.take<float>(static_cast<size_t>(n));
  float* gx = carve.take<float>(static_cast<size_t>(n));
  float* gy = carve.take<float>(static_cast<size_t>(n));
  float* mag = carve.take<float>(static_cast<size_t>(n));
  float* pad = carve.take<float>(static_cast<size_t>(cols + 2 * medimg::kQualityMaxRadius + 64));
  float* pts = carve.take<float>(static_cast<size_t>(2 * n));
  qg_blur(g.a, rows, cols, g.taps_a, g.radius_a, tmp, pad, ba);
  qg_blur(ba, rows, cols, g.taps_b, g.radius_b, tmp, pad, bb);
  qg_gradient(bb, rows, cols, gx, gy, mag);

  // Edge points: interior, allowed, above the threshold, a maximum of |g_b| along the
  // gradient direction quantised to 4 directions.
  using namespace simd;
  const float thr = g.threshold, tan22 = 0.41421356f;
  auto sload = [](const float* p) { return *p; };
  uint8_t* flag = carve.take<uint8_t>(static_cast<size_t>(cols + 64));
  ptrdiff_t n_all = 0;
  float top = 0.0f;
  // flag[x] = 1 for an edge point (the reference's masks: (hor & peak_h) | (ver & peak_v) |
  // (diag & same & peak_d) | (diag & !same & peak_a), above thr, allowed).
  auto flags = [&](ptrdiff_t i, auto m, auto gxv, auto gyv, auto ld, auto ldu8) {
    const auto ax = gxv < 0.0f ? -gxv : gxv;
    const auto ay = gyv < 0.0f ? -gyv : gyv;
    const auto hor = ay <= ax * tan22;
    const auto ver = ax <= ay * tan22;
    const auto diag = (hor | ver) == 0;
    const auto same = (gxv * gyv) > 0.0f;
    const auto ph = (m >= ld(mag + i - 1)) & (m >= ld(mag + i + 1));
    const auto pv = (m >= ld(mag + i - cols)) & (m >= ld(mag + i + cols));
    const auto pd = (m >= ld(mag + i - cols - 1)) & (m >= ld(mag + i + cols + 1));
    const auto pa = (m >= ld(mag + i - cols + 1)) & (m >= ld(mag + i + cols - 1));
    const auto peak = (hor & ph) | (ver & pv) | (diag & same & pd) | (diag & (same == 0) & pa);
    return peak & (m > thr) & (ldu8(g.allowed + i) != 0);
  };
  auto vld = [](const float* p) { return load(p); };
  auto sld = [](const float* p) { return *p; };
  auto vld8 = [](const uint8_t* p) { return load_u8(p); };
  auto sld8 = [](const uint8_t* p) { return static_cast<int32_t>(*p); };
  for (ptrdiff_t y = 1; y + 1 < rows; ++y) {
    const ptrdiff_t o = y * cols;
    flag[0] = flag[cols - 1] = 0;
    auto block = [&](ptrdiff_t x) {
      const ptrdiff_t i = o + x;
      const vi sel = flags(i, load(mag + i), load(gx + i), load(gy + i), vld, vld8);
      store_narrow8<uint8_t>(flag + x, sel & 1);
    };
    ptrdiff_t x = 1;
    if (cols - 2 >= kLanes) {
      for (; x + kLanes + 1 <= cols; x += kLanes) block(x);
      if (x < cols - 1) block(cols - 1 - kLanes);
      x = cols - 1;
    }
    for (; x + 1 < cols; ++x) {
      const ptrdiff_t i = o + x;
      flag[x] = flags(i, mag[i], gx[i], gy[i], sld, sld8) ? 1 : 0;
    }
    for (ptrdiff_t xb = 0; xb < cols; xb += 8) {
      uint64_t word = 0;
      const ptrdiff_t nb = cols - xb < 8 ? cols - xb : 8;
      __builtin_memcpy(&word, flag + xb, static_cast<size_t>(nb));
      if (word == 0) continue;
      for (ptrdiff_t x2 = xb; x2 < xb + nb; ++x2) {
        if (flag[x2] == 0) continue;
        const ptrdiff_t xx = x2;
        const ptrdiff_t i = o + xx;
        const float mv = mag[i];
        float fx, fy;
        const float* c = ba + o;
        qg_sobel<float>(sload, c - cols, c, c + cols, xx - 1, xx, xx + 1, &fx, &fy);
        pts[2 * n_all] = mv;
        pts[2 * n_all + 1] = fx * fx + fy * fy;
        ++n_all;
        top = mv > top ? mv : top;
      }
    }
  }
  out->n_all = static_cast<double>(n_all);
  out->n_used = 0.0;
  out->mean_a2 = out->mean_b2 = 0.0;
  if (n_all < g.min_edges || n_all == 0) return;

  // The strongest fraction: |g_b| at or above the 256-bin histogram bin (of [0, top (1 +
  // 1e-6))) where the count from the top reaches the wanted number.
  constexpr int kBins = medimg::kQualityEdgeBins;
  uint32_t hist[kBins];
  for (int b = 0; b < kBins; ++b) hist[b] = 0;
  const double hi = static_cast<double>(top) * (1.0 + 1e-6);
  const double hs = kBins / static_cast<double>(static_cast<float>(hi));
  for (ptrdiff_t p = 0; p < n_all; ++p) {
    const ptrdiff_t b = static_cast<ptrdiff_t>(static_cast<double>(pts[2 * p]) * hs);
    if (b >= 0 && b < kBins) ++hist[b];
  }
  ptrdiff_t want = static_cast<ptrdiff_t>(g.top_fraction * static_cast<double>(n_all));
  if (want < g.min_edges) want = g.min_edges;
  ptrdiff_t from_top = 0;
  int j = 0;
  for (; j < kBins; ++j) {
    from_top += hist[kBins - 1 - j];
    if (from_top >= want) break;
  }
  const int cut = kBins - 1 - j;
  const float cut_v = static_cast<float>(hi * (cut > 0 ? cut : 0) / kBins);
  double sa = 0.0, sb = 0.0;
  ptrdiff_t used = 0;
  for (ptrdiff_t p = 0; p < n_all; ++p) {
    const float mv = pts[2 * p];
    if (!(mv >= cut_v)) continue;
    sb += mv * mv;
    sa += pts[2 * p + 1];
    ++used;
  }
  out->n_used = static_cast<double>(used);
  out->mean_a2 = sa / static_cast<double>(used);
  out->mean_b2 = sb / static_cast<double>(used);
}

}  // namespace
