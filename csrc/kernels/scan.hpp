// One pass over an array for input validation: finiteness, minimum and maximum.
#pragma once

namespace {

// Returns true if every value is finite; *mn and *mx receive the minimum and maximum
// (meaningful only when the result is true).  x * 0 is 0 for finite x and NaN for NaN or
// +-Inf, so one accumulator of x * 0 detects every non-finite value.
static bool scan_kernel(const float* p, ptrdiff_t n, float* mn, float* mx) {
  using namespace simd;
  ptrdiff_t i = 0;
  vf nan_acc = set1(0.0f);
  float lo = p[0], hi = p[0];
  if (n >= kLanes) {
    vf vlo = load(p), vhi = vlo;
    for (; i + kLanes <= n; i += kLanes) {
      const vf x = load(p + i);
      nan_acc += x * 0.0f;
      vlo = vmin(vlo, x);
      vhi = vmax(vhi, x);
    }
    for (int l = 0; l < kLanes; ++l) {
      lo = lane(vlo, l) < lo ? lane(vlo, l) : lo;
      hi = lane(vhi, l) > hi ? lane(vhi, l) : hi;
    }
  }
  float tail_acc = 0.0f;
  for (; i < n; ++i) {
    tail_acc += p[i] * 0.0f;
    lo = p[i] < lo ? p[i] : lo;
    hi = p[i] > hi ? p[i] : hi;
  }
  *mn = lo;
  *mx = hi;
  const float total = static_cast<float>(reduce_sum(nan_acc)) + tail_acc;
  return total == 0.0f;  // false for NaN
}

}  // namespace
