// Border handling and padding shared by the neighbourhood kernels.  Included by
// csrc/kernels/target.cpp after simd.hpp, inside that target's anonymous namespace.
#pragma once

namespace {

// Reflect-101 (OpenCV BORDER_REFLECT_101, NumPy mode="reflect"): ...cb|abc...|...yz|yx...
static inline ptrdiff_t reflect101(ptrdiff_t i, ptrdiff_t n) {
  if (n == 1) return 0;
  const ptrdiff_t period = 2 * n - 2;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// Replicate (OpenCV BORDER_REPLICATE, NumPy mode="edge"): aaa|abc...yz|zzz.
static inline ptrdiff_t replicate(ptrdiff_t i, ptrdiff_t n) {
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

// Copies a row of n floats, subtracting `shift`.
static inline void copy_row_shifted(const float* src, float* dst, ptrdiff_t n, float shift) {
  using namespace simd;
  ptrdiff_t x = 0;
  for (; x + kLanes <= n; x += kLanes) store(dst + x, load(src + x) - shift);
  for (; x < n; ++x) dst[x] = src[x] - shift;
}

// Writes `in` (rows x cols, contiguous) into `dst` (row stride `stride`) with an r-pixel
// border on every side, values minus `shift`; the slack after column cols + 2r is zeroed
// so that vector loads there read finite numbers.
template <bool kReflect>
static void pad_image(const float* in, ptrdiff_t rows, ptrdiff_t cols, int r, float shift,
                      float* dst, ptrdiff_t stride) {
  for (ptrdiff_t py = 0; py < rows + 2 * r; ++py) {
    const ptrdiff_t sy = kReflect ? reflect101(py - r, rows) : replicate(py - r, rows);
    const float* src = in + sy * cols;
    float* d = dst + py * stride;
    for (ptrdiff_t px = 0; px < r; ++px) {
      const ptrdiff_t sx = kReflect ? reflect101(px - r, cols) : replicate(px - r, cols);
      d[px] = src[sx] - shift;
    }
    copy_row_shifted(src, d + r, cols, shift);
    for (ptrdiff_t px = cols + r; px < cols + 2 * r; ++px) {
      const ptrdiff_t sx = kReflect ? reflect101(px - r, cols) : replicate(px - r, cols);
      d[px] = src[sx] - shift;
    }
    for (ptrdiff_t px = cols + 2 * r; px < stride; ++px) d[px] = 0.0f;
  }
}

static inline float mean_of(const float* p, ptrdiff_t n) {
  using namespace simd;
  vf acc = set1(0.0f);
  ptrdiff_t x = 0;
  for (; x + kLanes <= n; x += kLanes) acc += load(p + x);
  double s = reduce_sum(acc);
  for (; x < n; ++x) s += p[x];
  return n > 0 ? static_cast<float>(s / static_cast<double>(n)) : 0.0f;
}

static inline void store_row(float* dst, simd::vf v, ptrdiff_t x, ptrdiff_t cols) {
  if (x + simd::kLanes <= cols)
    simd::store(dst + x, v);
  else
    simd::store_n(dst + x, v, cols - x);
}

}  // namespace
