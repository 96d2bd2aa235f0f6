// Speckle filters: SRAD (Yu & Acton 2002), Lee / Kuan / additive Lee, Frost.
// Written once against csrc/simd.hpp; compiled per SIMD target by target.cpp.
#pragma once

namespace {

// ---------------------------------------------------------------------------------------
// SRAD.  Discretisation of Yu & Acton (2002), eqs. (35)-(37) and (58): with
//   dN = I(i-1,j) - I, dS = I(i+1,j) - I, dW = I(i,j-1) - I, dE = I(i,j+1) - I,
//   G2 = (dN^2 + dS^2 + dW^2 + dE^2) / I^2,  L = (dN + dS + dW + dE) / I,
//   q^2 = (G2/2 - L^2/16) / (1 + L/4)^2,
//   c = 1 / (1 + (q^2 - q0^2) / (q0^2 (1 + q0^2))), clamped to [0, 1],
//   I <- I + dt/4 * (c(i+1,j) dS + c(i,j) dN + c(i,j+1) dE + c(i,j) dW),
// with q0(t) = q0 exp(-rho t).  Border: replicate (zero flux, Neumann).
//
// I^2 cancels in q^2: with S1 = sum d, S2 = sum d^2 and the 4-neighbour mean
// M = I + S1/4,  q^2 = (S2/2 - S1^2/16) / M^2.  This form needs no division by the
// pixel (defined for black pixels) and, with c = M^2 / (M^2 + (num - q0^2 M^2) k),
// one division per pixel.  M is floored at 1e-6 of the image maximum.
// ---------------------------------------------------------------------------------------
static void srad_kernel(const float* in, float* out, ptrdiff_t rows, ptrdiff_t cols, int iterations,
                        float time_step, float q0, float rho, float* scratch) {
  using namespace simd;
  const ptrdiff_t stride = medimg::padded_stride(cols, 1);
  const ptrdiff_t plane = (rows + 2) * stride;
  float* J = scratch;
  float* K = scratch + plane;
  float* C = scratch + 2 * plane;
  pad_image<false>(in, rows, cols, 1, 0.0f, J, stride);
  // Cells of K and C that the loops read but never write must hold finite values: the
  // slack columns of K (read by tail lanes) and, in C, the east column cols+1 and the
  // south row rows+1 (multiplied by a zero difference at the border).
  for (ptrdiff_t y = 0; y < rows + 2; ++y) {
    for (ptrdiff_t x = cols + 2; x < stride; ++x) K[y * stride + x] = 0.0f;
    C[y * stride + cols + 1] = 0.0f;
  }
  for (ptrdiff_t x = 0; x < stride; ++x) C[(rows + 1) * stride + x] = 0.0f;

  vf vmx = set1(0.0f);
  for (ptrdiff_t y = 1; y <= rows; ++y)
    for (ptrdiff_t x = 0; x < stride; x += kLanes) vmx = vmax(vmx, load(J + y * stride + x));
  float mx = 0.0f;
  for (int l = 0; l < kLanes; ++l) mx = lane(vmx, l) > mx ? lane(vmx, l) : mx;
  const vf floor_v = set1(mx * 1e-6f > 1e-18f ? mx * 1e-6f : 1e-18f);
  const vf zero = set1(0.0f), one = set1(1.0f);

  for (int it = 0; it < iterations; ++it) {
    const float q = q0 * __builtin_expf(-rho * time_step * static_cast<float>(it));
    const float q0sq = q * q;
    const float k = 1.0f / (q0sq * (1.0f + q0sq));
    // Pass 1: diffusion coefficient of every pixel.
    for (ptrdiff_t y = 0; y < rows; ++y) {
      const float* jn = J + y * stride + 1;
      const float* jc = jn + stride;
      const float* js = jc + stride;
      float* c = C + (y + 1) * stride + 1;
      for (ptrdiff_t x = 0; x < cols; x += kLanes) {
        const vf Jc = load(jc + x);
        const vf dN = load(jn + x) - Jc, dS = load(js + x) - Jc;
        const vf dW = load(jc + x - 1) - Jc, dE = load(jc + x + 1) - Jc;
        const vf s1 = (dN + dS) + (dW + dE);
        const vf s2 = fmadd(dN, dN, dS * dS) + fmadd(dW, dW, dE * dE);
        const vf m = vmax(Jc + 0.25f * s1, floor_v);
        const vf m2 = m * m;
        const vf num = 0.5f * s2 - 0.0625f * (s1 * s1);
        store(c + x, clamp(m2 / (m2 + (num - q0sq * m2) * k), zero, one));
      }
    }
    // Pass 2: divergence and explicit update into K, then swap.
    const float k4 = 0.25f * time_step;
    for (ptrdiff_t y = 0; y < rows; ++y) {
      const float* jn = J + y * stride + 1;
      const float* jc = jn + stride;
      const float* js = jc + stride;
      const float* cc = C + (y + 1) * stride + 1;
      const float* cs = cc + stride;
      float* kk = K + (y + 1) * stride + 1;
      for (ptrdiff_t x = 0; x < cols; x += kLanes) {
        const vf Jc = load(jc + x);
        const vf dN = load(jn + x) - Jc, dS = load(js + x) - Jc;
        const vf dW = load(jc + x - 1) - Jc, dE = load(jc + x + 1) - Jc;
        const vf div = fmadd(load(cc + x), dN + dW, fmadd(load(cs + x), dS, load(cc + x + 1) * dE));
        store_row(kk, fmadd(set1(k4), div, Jc), x, cols);
      }
      kk[-1] = kk[0];  // replicate west / east border
      kk[cols] = kk[cols - 1];
    }
    __builtin_memcpy(K, K + stride, sizeof(float) * static_cast<size_t>(cols + 2));
    __builtin_memcpy(K + (rows + 1) * stride, K + rows * stride,
                     sizeof(float) * static_cast<size_t>(cols + 2));
    float* t = J;
    J = K;
    K = t;
  }
  for (ptrdiff_t y = 0; y < rows; ++y)
    __builtin_memcpy(out + y * cols, J + (y + 1) * stride + 1,
                     sizeof(float) * static_cast<size_t>(cols));
}

// Vertical window sums of P and P^2 for output row y, over columns [0, xe), in double
// (d1, d2), updated incrementally (add the entering row, subtract the leaving one): a float product
// of two floats is exact in double, so a large value that leaves the window cancels exactly instead
// of leaving its rounding error (up to half a float ulp of the old sum) in a small new sum for many
// rows. Recomputed from scratch every kRefresh rows all the same.  Every target sums in the same
// order, so the sums are bit-identical across targets.
constexpr ptrdiff_t kRefresh = 32;

static inline void column_sums(const float* P, ptrdiff_t stride, int window, ptrdiff_t xe,
                               ptrdiff_t y, double* d1, double* d2) {
  using namespace simd;
  if (y % kRefresh == 0) {
    const float* p = P + y * stride;
    for (ptrdiff_t x = 0; x < xe; ++x) {
      double a = 0.0, b = 0.0;
      for (int k = 0; k < window; ++k) {
        const double v = static_cast<double>(p[k * stride + x]);
        a += v;
        b += v * v;
      }
      d1[x] = a;
      d2[x] = b;
    }
    return;
  }
  const float* enter = P + (y + window - 1) * stride;
  const float* leave = P + (y - 1) * stride;
  for (ptrdiff_t x = 0; x < xe; x += kLanes) {
    const vf e = load(enter + x), l = load(leave + x);
    const vdn el = f2d_lo(e), ll = f2d_lo(l);
    const vdn a_lo = load_dn(d1 + x) + (el - ll);
    const vdn b_lo = load_dn(d2 + x) + (el * el - ll * ll);
    store_dn(d1 + x, a_lo);
    store_dn(d2 + x, b_lo);
    if (kLanes > 1) {
      const vdn eh = f2d_hi(e), lh = f2d_hi(l);
      store_dn(d1 + x + kLanesD, load_dn(d1 + x + kLanesD) + (eh - lh));
      store_dn(d2 + x + kLanesD, load_dn(d2 + x + kLanesD) + (eh * eh - lh * lh));
    }
  }
}

// Local mean and variance of a window x window neighbourhood from the double column
// sums.  In double: E[x^2] - m^2 of float sums cancels catastrophically where the window's
// values are far below the global shift (a dark corner of a frame with bright structures:
// float error ~1e-7 * shift^2 against a true variance many times smaller; hypothesis found
// a 4x3 image where the scalar and SIMD paths gave 0.04 and 0.37 for a float64 0.375).
static inline void window_stats(const double* d1, const double* d2, ptrdiff_t x, int window,
                                double inv_n, simd::vf& mean, simd::vf& var) {
  using namespace simd;
  vdn a_lo = load_dn(d1 + x), b_lo = load_dn(d2 + x);
  vdn a_hi = set1dn(0.0), b_hi = set1dn(0.0);
  if (kLanes > 1) {
    a_hi = load_dn(d1 + x + kLanesD);
    b_hi = load_dn(d2 + x + kLanesD);
  }
  for (int j = 1; j < window; ++j) {
    a_lo += load_dn(d1 + x + j);
    b_lo += load_dn(d2 + x + j);
    if (kLanes > 1) {
      a_hi += load_dn(d1 + x + j + kLanesD);
      b_hi += load_dn(d2 + x + j + kLanesD);
    }
  }
  const vdn m_lo = a_lo * inv_n, m_hi = a_hi * inv_n;
  const vdn v_lo = b_lo * inv_n - m_lo * m_lo, v_hi = b_hi * inv_n - m_hi * m_hi;
  mean = dn2f(m_lo, m_hi);
  var = vmax(dn2f(v_lo, v_hi), set1(0.0f));
}

// Scratch layout and running statistics shared by the local-window filters: the image
// padded (reflect-101) and shifted by the mean of its middle row, to limit float
// cancellation, followed by two (unused) float rows and the double running column sums.
struct LocalWindow {
  int window, r;
  ptrdiff_t stride, xe;
  float* P;
  double* d1;
  double* d2;
  float shift;
  double inv_n_d;

  LocalWindow(const float* in, ptrdiff_t rows, ptrdiff_t cols, int w, float* scratch)
      : window(w), r(w / 2), stride(medimg::padded_stride(cols, w / 2)) {
    xe = ((cols + simd::kLanes - 1) / simd::kLanes) * simd::kLanes + 2 * r;
    P = scratch;
    // after the padded image: two float rows (unused since the window statistics moved to
    // double; the scratch size is unchanged), then the double column sums
    d1 = reinterpret_cast<double*>(P + (rows + 2 * r + 2) * stride);
    d2 = d1 + stride;
    shift = mean_of(in + (rows / 2) * cols, cols);
    inv_n_d = 1.0 / static_cast<double>(window * window);
    pad_image<true>(in, rows, cols, r, shift, P, stride);
  }
  void start_row(ptrdiff_t y) { column_sums(P, stride, window, xe, y, d1, d2); }
  // Mean and variance (of shifted values) of the windows centred on columns x .. x+lanes-1.
  void stats(ptrdiff_t x, simd::vf& mean, simd::vf& var) const {
    window_stats(d1, d2, x, window, inv_n_d, mean, var);
  }
};

// Lee / Kuan / additive-Lee family (see KernelTable::local_stats).
static void local_stats_kernel(const float* in, float* out, ptrdiff_t rows, ptrdiff_t cols,
                               int window, float a, float b, float g, float* scratch) {
  using namespace simd;
  LocalWindow lw(in, rows, cols, window, scratch);
  const vf zero = set1(0.0f), one = set1(1.0f), tiny = set1(1e-30f);
  for (ptrdiff_t y = 0; y < rows; ++y) {
    lw.start_row(y);
    const float* center = lw.P + (y + lw.r) * lw.stride + lw.r;
    float* o = out + y * cols;
    for (ptrdiff_t x = 0; x < cols; x += kLanes) {
      vf m, v;
      lw.stats(x, m, v);
      const vf mt = m + lw.shift;
      const vf w = clamp((v - a * (mt * mt) - b) / (vmax(v, tiny) * g), zero, one);
      store_row(o, fmadd(w, load(center + x) - m, mt), x, cols);
    }
  }
}

// Frost filter (Frost et al. 1982): out = sum_q w_q I_q / sum_q w_q over the window,
// w_q = exp(-damping * Ci^2 * |p - q|), Ci^2 = var / mean^2 of the window at p.
//
// Rings of equal distance: ring k holds the taps with {|dx|, |dy|} = {ax, ay}, ax <= ay,
// k = ay (ay + 1) / 2 + ax.  The numerator is sum_k w_k * (sum of ring k), so the window
// costs one add per tap and one multiply per ring.  exp(-alpha d) for d = m * d_base is
// exp(-alpha d_base)^m: only rings whose squared distance has no square factor m^2
// leaving another ring's distance need an exp (5 of the 10 rings of a 7x7 window).
struct FrostPlan {
  static constexpr int kMaxR = medimg::kMaxWindow / 2;
  static constexpr int kMaxRings = (kMaxR + 1) * (kMaxR + 2) / 2;
  static constexpr int kMaxTaps = medimg::kMaxWindow * medimg::kMaxWindow;
  int r, window, nd;
  int d2[kMaxRings], count[kMaxRings], start[kMaxRings + 1];
  int order[kMaxRings], base[kMaxRings], power[kMaxRings];  // order: by distance
  int tap_dy[kMaxTaps], tap_dx[kMaxTaps];                   // grouped by ring

  static constexpr int ring_of(int r, int dy, int dx) {
    int ay = dy < r ? r - dy : dy - r, ax = dx < r ? r - dx : dx - r;
    if (ax > ay) {
      const int t = ax;
      ax = ay;
      ay = t;
    }
    return ay * (ay + 1) / 2 + ax;
  }

  constexpr explicit FrostPlan(int radius)
      : r(radius),
        window(2 * radius + 1),
        nd(0),
        d2{},
        count{},
        start{},
        order{},
        base{},
        power{},
        tap_dy{},
        tap_dx{} {
    for (int ay = 0; ay <= r; ++ay)
      for (int ax = 0; ax <= ay; ++ax, ++nd) d2[nd] = ax * ax + ay * ay;
    for (int dy = 0; dy < window; ++dy)
      for (int dx = 0; dx < window; ++dx) ++count[ring_of(r, dy, dx)];
    for (int k = 0; k < nd; ++k) start[k + 1] = start[k] + count[k];
    int fill[kMaxRings] = {};
    for (int dy = 0; dy < window; ++dy)
      for (int dx = 0; dx < window; ++dx) {
        const int k = ring_of(r, dy, dx);
        const int i = start[k] + fill[k]++;
        tap_dy[i] = dy;
        tap_dx[i] = dx;
      }
    for (int k = 0; k < nd; ++k) order[k] = k;
    for (int i = 1; i < nd; ++i)
      for (int j = i; j > 0 && d2[order[j - 1]] > d2[order[j]]; --j) {
        const int t = order[j];
        order[j] = order[j - 1];
        order[j - 1] = t;
      }
    for (int k = 0; k < nd; ++k) {
      base[k] = k;
      power[k] = 1;
      for (int m = r; m > 1 && power[k] == 1; --m) {
        if (d2[k] == 0 || d2[k] % (m * m) != 0) continue;
        for (int j = 0; j < nd; ++j)
          if (d2[j] * m * m == d2[k]) {
            base[k] = j;
            power[k] = m;
            break;
          }
      }
    }
  }
};

// Compile-time plans for the common windows: with the plan a constant, the compiler
// unrolls the ring loops completely.
constexpr FrostPlan kFrost3(1), kFrost5(2), kFrost7(3);

__attribute__((always_inline)) static inline void frost_rows(const FrostPlan& plan, LocalWindow& lw,
                                                             float* out, ptrdiff_t rows,
                                                             ptrdiff_t cols, float damping) {
  using namespace simd;
  float dist[FrostPlan::kMaxRings];
  for (int k = 0; k < plan.nd; ++k) dist[k] = __builtin_sqrtf(static_cast<float>(plan.d2[k]));
  const ptrdiff_t stride = lw.stride;
  const vf tiny = set1(1e-30f);
  vf e[FrostPlan::kMaxRings];
  for (ptrdiff_t y = 0; y < rows; ++y) {
    lw.start_row(y);
    float* o = out + y * cols;
    const float* top = lw.P + y * stride;
    for (ptrdiff_t x = 0; x < cols; x += kLanes) {
      vf m, v;
      lw.stats(x, m, v);
      const vf mt = m + lw.shift;
      const vf alpha = vmin(damping * v / vmax(mt * mt, tiny), set1(1e6f));
      const float* p = top + x;
      vf num = load(p + plan.r * stride + plan.r);  // ring 0: the centre, weight 1
      vf den = set1(1.0f);
#pragma GCC unroll 16
      for (int i = 1; i < plan.nd; ++i) {
        const int k = plan.order[i];
        vf w;
        if (plan.power[k] == 1) {
          w = vexp(-alpha * dist[k]);
        } else {
          w = e[plan.base[k]];
          for (int n = 1; n < plan.power[k]; ++n) w *= e[plan.base[k]];
        }
        e[k] = w;
        vf ring = set1(0.0f);
#pragma GCC unroll 8
        for (int j = plan.start[k]; j < plan.start[k + 1]; ++j)
          ring += load(p + plan.tap_dy[j] * stride + plan.tap_dx[j]);
        num = fmadd(w, ring, num);
        den = fmadd(set1(static_cast<float>(plan.count[k])), w, den);
      }
      store_row(o, num / den + lw.shift, x, cols);
    }
  }
}

static void frost_kernel(const float* in, float* out, ptrdiff_t rows, ptrdiff_t cols, int window,
                         float damping, float* scratch) {
  LocalWindow lw(in, rows, cols, window, scratch);
  switch (window) {
    case 3:
      frost_rows(kFrost3, lw, out, rows, cols, damping);
      return;
    case 5:
      frost_rows(kFrost5, lw, out, rows, cols, damping);
      return;
    case 7:
      frost_rows(kFrost7, lw, out, rows, cols, damping);
      return;
    default: {
      const FrostPlan plan(window / 2);
      frost_rows(plan, lw, out, rows, cols, damping);
    }
  }
}

}  // namespace
