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
static void srad_kernel(const float* in, float* out, ptrdiff_t rows, ptrdiff_t cols,
                        int iterations, float time_step, float q0, float rho, float* scratch) {
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
        const vf s2 = (dN * dN + dS * dS) + (dW * dW + dE * dE);
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
        const vf div = load(cc + x) * (dN + dW) + load(cs + x) * dS + load(cc + x + 1) * dE;
        store_row(kk, Jc + k4 * div, x, cols);
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

// Vertical window sums of P and P^2 for output row y, over columns [0, xe): updated
// incrementally (add the entering row, subtract the leaving one) and recomputed from
// scratch every kRefresh rows so float rounding cannot drift.
constexpr ptrdiff_t kRefresh = 32;

static inline void column_sums(const float* P, ptrdiff_t stride, int window, ptrdiff_t xe,
                               ptrdiff_t y, float* s1, float* s2) {
  using namespace simd;
  if (y % kRefresh == 0) {
    const float* p = P + y * stride;
    for (ptrdiff_t x = 0; x < xe; x += kLanes) {
      vf v = load(p + x);
      vf a = v, b = v * v;
      for (int k = 1; k < window; ++k) {
        v = load(p + k * stride + x);
        a += v;
        b += v * v;
      }
      store(s1 + x, a);
      store(s2 + x, b);
    }
    return;
  }
  const float* enter = P + (y + window - 1) * stride;
  const float* leave = P + (y - 1) * stride;
  for (ptrdiff_t x = 0; x < xe; x += kLanes) {
    const vf e = load(enter + x), l = load(leave + x);
    store(s1 + x, load(s1 + x) + (e - l));
    store(s2 + x, load(s2 + x) + (e * e - l * l));
  }
}

// Local mean and variance of a window x window neighbourhood from the column sums.
static inline void window_stats(const float* s1, const float* s2, ptrdiff_t x, int window,
                                float inv_n, simd::vf& mean, simd::vf& var) {
  using namespace simd;
  vf a = load(s1 + x), b = load(s2 + x);
  for (int j = 1; j < window; ++j) {
    a += load(s1 + x + j);
    b += load(s2 + x + j);
  }
  mean = a * inv_n;
  var = vmax(b * inv_n - mean * mean, set1(0.0f));
}

// Scratch layout and running statistics shared by the local-window filters: the image
// padded (reflect-101) and shifted by the mean of its middle row, to limit float
// cancellation in E[x^2] - m^2, followed by the two column-sum rows.
struct LocalWindow {
  int window, r;
  ptrdiff_t stride, xe;
  float* P;
  float* s1;
  float* s2;
  float shift, inv_n;

  LocalWindow(const float* in, ptrdiff_t rows, ptrdiff_t cols, int w, float* scratch)
      : window(w), r(w / 2), stride(medimg::padded_stride(cols, w / 2)) {
    xe = ((cols + simd::kLanes - 1) / simd::kLanes) * simd::kLanes + 2 * r;
    P = scratch;
    s1 = P + (rows + 2 * r) * stride;
    s2 = s1 + stride;
    shift = mean_of(in + (rows / 2) * cols, cols);
    inv_n = 1.0f / static_cast<float>(window * window);
    pad_image<true>(in, rows, cols, r, shift, P, stride);
  }
  void start_row(ptrdiff_t y) { column_sums(P, stride, window, xe, y, s1, s2); }
  // Mean and variance (of shifted values) of the windows centred on columns x .. x+lanes-1.
  void stats(ptrdiff_t x, simd::vf& mean, simd::vf& var) const {
    window_stats(s1, s2, x, window, inv_n, mean, var);
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
      store_row(o, mt + w * (load(center + x) - m), x, cols);
    }
  }
}

// Frost filter (Frost et al. 1982): out = sum_q w_q I_q / sum_q w_q over the window,
// w_q = exp(-damping * Ci^2 * |p - q|), Ci^2 = var / mean^2 of the window at p.
// The weights depend on the distance only through the (r+1)(r+2)/2 distinct values,
// so each pixel evaluates that many exponentials, not window^2.
static void frost_kernel(const float* in, float* out, ptrdiff_t rows, ptrdiff_t cols,
                         int window, float damping, float* scratch) {
  using namespace simd;
  LocalWindow lw(in, rows, cols, window, scratch);
  const int r = lw.r;

  constexpr int kMaxR = medimg::kMaxWindow / 2;
  constexpr int kMaxDistinct = (kMaxR + 1) * (kMaxR + 2) / 2;
  float dist[kMaxDistinct];
  float count[kMaxDistinct];
  unsigned char kidx[medimg::kMaxWindow * medimg::kMaxWindow];
  int nd = 0;
  for (int dy = 0; dy <= r; ++dy)
    for (int dx = 0; dx <= dy; ++dx) {
      dist[nd] = __builtin_sqrtf(static_cast<float>(dx * dx + dy * dy));
      count[nd] = 0.0f;
      ++nd;
    }
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx) {
      int ay = dy < 0 ? -dy : dy, ax = dx < 0 ? -dx : dx;
      if (ax > ay) {
        int t = ax;
        ax = ay;
        ay = t;
      }
      const int k = ay * (ay + 1) / 2 + ax;
      kidx[(dy + r) * window + (dx + r)] = static_cast<unsigned char>(k);
      count[k] += 1.0f;
    }

  const vf tiny = set1(1e-30f);
  vf e[kMaxDistinct];
  for (ptrdiff_t y = 0; y < rows; ++y) {
    lw.start_row(y);
    float* o = out + y * cols;
    for (ptrdiff_t x = 0; x < cols; x += kLanes) {
      vf m, v;
      lw.stats(x, m, v);
      const vf mt = m + lw.shift;
      const vf alpha = vmin(damping * v / vmax(mt * mt, tiny), set1(1e6f));
      vf den = set1(0.0f);
      for (int k = 0; k < nd; ++k) {
        e[k] = vexp(-alpha * dist[k]);
        den += count[k] * e[k];
      }
      vf num = set1(0.0f);
      const unsigned char* ki = kidx;
      for (int dy = 0; dy < window; ++dy) {
        const float* row = lw.P + (y + dy) * lw.stride + x;
        for (int dx = 0; dx < window; ++dx) num += e[*ki++] * load(row + dx);
      }
      store_row(o, num / den + lw.shift, x, cols);
    }
  }
}

}  // namespace
