// Noise-level estimation.
#pragma once

namespace {

// |(I * N)(y, x)| with N = [[1,-2,1],[-2,4,-2],[1,-2,1]] for the pixel at column x of
// rows n (north), c (centre), s (south).  Written once for float lanes and plain floats.
template <typename T, typename Load>
static inline T immerkaer_abs(Load ld, const float* n, const float* c, const float* s,
                              ptrdiff_t x) {
  const T a = ld(n + x - 1) + ld(n + x + 1) + ld(s + x - 1) + ld(s + x + 1);
  const T b = ld(n + x) + ld(s + x) + ld(c + x - 1) + ld(c + x + 1);
  const T v = a - 2.0f * b + 4.0f * ld(c + x);
  return v < 0.0f ? -v : v;
}

// Immerkaer (1996): sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * N| over the interior.
static double immerkaer_abs_sum_kernel(const float* in, ptrdiff_t rows, ptrdiff_t cols) {
  using namespace simd;
  auto vload = [](const float* p) { return load(p); };
  auto sload = [](const float* p) { return *p; };
  double total = 0.0;
  for (ptrdiff_t y = 1; y + 1 < rows; ++y) {
    const float* n = in + (y - 1) * cols;
    const float* c = n + cols;
    const float* s = c + cols;
    vf acc = set1(0.0f);
    ptrdiff_t x = 1;
    for (; x + kLanes + 1 <= cols; x += kLanes)
      acc += vmax(immerkaer_abs<vf>(vload, n, c, s, x), set1(0.0f));
    double row = reduce_sum(acc);
    for (; x + 1 < cols; ++x) row += immerkaer_abs<float>(sload, n, c, s, x);
    total += row;
  }
  return total;
}

}  // namespace
