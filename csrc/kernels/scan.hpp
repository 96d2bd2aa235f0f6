// One pass over an array for input validation: finiteness, minimum and maximum; and the
// widening of uint8 / uint16 frames to float32 that precedes it.
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

// dst[i] = float(src[i]) for n uint8 (bytes == 1) or uint16 (bytes == 2) values: exact.
static void widen_kernel(const void* src, int bytes, ptrdiff_t n, float* dst) {
  using namespace simd;
  ptrdiff_t i = 0;
  if (bytes == 1) {
    const uint8_t* p = static_cast<const uint8_t*>(src);
    for (; i + kLanes <= n; i += kLanes) store(dst + i, to_float(load_u8(p + i)));
    for (; i < n; ++i) dst[i] = static_cast<float>(p[i]);
    return;
  }
  // uint16: blocks of a fixed length, which GCC vectorises for the target's instructions.
  const uint16_t* p = static_cast<const uint16_t*>(src);
  constexpr ptrdiff_t kBlock = 64;
  for (; i + kBlock <= n; i += kBlock)
    for (ptrdiff_t k = 0; k < kBlock; ++k) dst[i + k] = static_cast<float>(p[i + k]);
  for (; i < n; ++i) dst[i] = static_cast<float>(p[i]);
}

}  // namespace
