// Affine quantisation of a model input (runtime/_quant.py, runtime/_model.py):
//   q[i] = saturate(round_half_even(x[i] * a[i % C] + b[i % C]))   in int8 / uint8, or
//   q[i] = x[i] * a[i % C] + b[i % C]                             in float32,
// for interleaved channels C (HWC layout), fused with the validation scan of x (finite,
// min, max) so that one pass over the frame both checks and quantises it.
// The product and the sum are two float32 roundings (no FMA), exactly what NumPy computes.
#pragma once

namespace {

// Round half to even of values already clamped to |y| < 2^22: adding and subtracting
// 1.5 * 2^23 leaves the nearest integer (IEEE round-to-nearest-even); exact under
// -ffp-contract=off without -ffast-math, which every target TU is compiled with.
static inline simd::vf quant_round(simd::vf y) {
  const simd::vf magic = simd::set1(12582912.0f);
  return (y + magic) - magic;
}

template <typename T>
static bool quantize_affine_impl(const float* x, ptrdiff_t n, int channels, const float* a,
                                 const float* b, float lo, float hi, T* dst, float* mn, float* mx) {
  using namespace simd;
  constexpr bool kFloat = sizeof(T) == 4;
  // Pattern vectors: lane l of block k holds the coefficient of element k * kLanes + l,
  // so one block of `channels` vectors starts at a multiple of `channels`.
  vf va[medimg::kQuantMaxChannels], vb[medimg::kQuantMaxChannels];
  for (int k = 0; k < channels; ++k) {
    float la[kLanes], lb[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      la[l] = a[(k * kLanes + l) % channels];
      lb[l] = b[(k * kLanes + l) % channels];
    }
    va[k] = load(la);
    vb[k] = load(lb);
  }
  const vf vlo = set1(lo), vhi = set1(hi);
  const ptrdiff_t block = static_cast<ptrdiff_t>(channels) * kLanes;
  vf nan_acc = set1(0.0f), vmin_ = set1(x[0]), vmax_ = set1(x[0]);
  ptrdiff_t i = 0;
  for (; i + block <= n; i += block) {
    for (int k = 0; k < channels; ++k) {
      const vf v = load(x + i + k * kLanes);
      nan_acc += v * 0.0f;
      vmin_ = vmin(vmin_, v);
      vmax_ = vmax(vmax_, v);
      const vf y = v * va[k] + vb[k];
      if constexpr (kFloat) {
        store(reinterpret_cast<float*>(dst) + i + k * kLanes, y);
      } else {
        store_narrow8(dst + i + k * kLanes, to_int(quant_round(clamp(y, vlo, vhi))));
      }
    }
  }
  float lo_x = lane(vmin_, 0), hi_x = lane(vmax_, 0);
  for (int l = 1; l < kLanes; ++l) {
    lo_x = lane(vmin_, l) < lo_x ? lane(vmin_, l) : lo_x;
    hi_x = lane(vmax_, l) > hi_x ? lane(vmax_, l) : hi_x;
  }
  float tail_acc = 0.0f;
  for (; i < n; ++i) {
    const float v = x[i];
    tail_acc += v * 0.0f;
    lo_x = v < lo_x ? v : lo_x;
    hi_x = v > hi_x ? v : hi_x;
    const int c = static_cast<int>(i % channels);
    const float y = v * a[c] + b[c];
    if constexpr (kFloat) {
      reinterpret_cast<float*>(dst)[i] = y;
    } else {
      float t = y > lo ? y : lo;  // NaN -> lo: never an undefined conversion
      t = t < hi ? t : hi;
      const float r = (t + 12582912.0f) - 12582912.0f;
      dst[i] = static_cast<T>(static_cast<int32_t>(r));
    }
  }
  *mn = lo_x;
  *mx = hi_x;
  return static_cast<float>(reduce_sum(nan_acc)) + tail_acc == 0.0f;
}

// Returns true if every x is finite (the output is then defined); *mn, *mx: range of x.
static bool quantize_affine_kernel(const float* x, ptrdiff_t n, int channels, const float* a,
                                   const float* b, int out_type, void* dst, float* mn, float* mx) {
  switch (out_type) {
    case medimg::kQuantInt8:
      return quantize_affine_impl(x, n, channels, a, b, -128.0f, 127.0f, static_cast<int8_t*>(dst),
                                  mn, mx);
    case medimg::kQuantUint8:
      return quantize_affine_impl(x, n, channels, a, b, 0.0f, 255.0f, static_cast<uint8_t*>(dst),
                                  mn, mx);
    default:
      return quantize_affine_impl(x, n, channels, a, b, 0.0f, 0.0f, static_cast<float*>(dst), mn,
                                  mx);
  }
}

}  // namespace
