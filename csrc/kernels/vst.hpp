// Variance stabilisation for Poisson-Gaussian (X-ray quantum + electronic) noise.
#pragma once

namespace {

// Generalised Anscombe transform (Murtagh, Starck & Bijaoui 1995; Makitalo & Foi 2013,
// eq. 4 with mu = 0):  f(z) = 2/gain * sqrt(max(gain z + 3/8 gain^2 + sigma^2, 0)).
static void anscombe_kernel(const float* in, float* out, ptrdiff_t n, float gain, float sigma) {
  using namespace simd;
  const float k = 2.0f / gain;
  const float c = 0.375f * gain * gain + sigma * sigma;
  const vf zero = set1(0.0f);
  ptrdiff_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    store(out + i, k * vsqrt(vmax(gain * load(in + i) + c, zero)));
  for (; i < n; ++i) {
    const float t = gain * in[i] + c;
    out[i] = k * __builtin_sqrtf(t > 0.0f ? t : 0.0f);
  }
}

// Exact unbiased inverse (Makitalo & Foi 2011, 2013) by linear interpolation in a table
// of y(D) = E^-1[f(z) | y] computed by the Python wrapper; beyond the table the
// closed-form asymptote y = D^2/4 + sqrt(3/2)/4 D^-1 - 11/8 D^-2 + 5/8 sqrt(3/2) D^-3
// - 1/8 - sigma^2 is used; below the table (D < E[f(z) | y = 0]) the result is 0.
template <typename T>
static inline T inverse_tail(T d, float sigma2) {
  const T id = 1.0f / d;
  const float s32 = 1.224744871391589f;  // sqrt(3/2)
  return 0.25f * d * d + (0.25f * s32) * id - 1.375f * (id * id) + (0.625f * s32) * (id * id * id) -
         (0.125f + sigma2);
}

static void inverse_anscombe_kernel(const float* in, float* out, ptrdiff_t n,
                                    const medimg::InverseAnscombeTable* tab) {
  using namespace simd;
  const float* v = tab->values;
  const float last = static_cast<float>(tab->size - 1);
  const vf zero = set1(0.0f);
  ptrdiff_t i = 0;
  for (; i < n; i += kLanes) {
    const ptrdiff_t m = n - i < kLanes ? n - i : kLanes;
    vf d;
    if (m == kLanes) {
      d = load(in + i);
    } else {
      float tmp[kLanes] = {};
      for (ptrdiff_t l = 0; l < m; ++l) tmp[l] = in[i + l];
      d = load(tmp);
    }
    const vf t = (d - tab->d0) * tab->inv_step;
    const vf tc = clamp(t, zero, set1(last));
    const vi idx = to_int(vmin(tc, set1(last - 1.0f)));  // last interval: frac in [0, 1]
    const vf frac = tc - to_float(idx);
    const vf a = gather(v, idx), b = gather(v + 1, idx);
    vf y = a + frac * (b - a);
    const vf tail = inverse_tail(vmax(d, set1(1.0f)), tab->sigma2);
    y = t >= last ? tail : y;
    y = t <= 0.0f ? zero : y;
    y = vmax(y, zero) * tab->gain;
    store_row(out, y, i, n);
  }
}

}  // namespace
