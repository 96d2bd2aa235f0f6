// Portable SIMD layer for medimg-edge kernels.
//
// csrc/kernels/target.cpp is compiled once per SIMD target with exactly one
// MEDIMG_TARGET_<NAME> macro defined and that target's instruction-set flags.
// This header then provides, inside the anonymous namespace of that translation unit,
// a vector type `vf` (float lanes), `vi` (int32 lanes) and the handful of operations the
// kernels need.  Arithmetic uses GCC/Clang vector extensions, so one kernel source
// compiles to SSE4, AVX2+FMA, AVX-512 or NEON code; the scalar target uses plain
// `float` with auto-vectorisation disabled, which makes it an honest reference path.
//
// Everything here has internal linkage (anonymous namespace, static inline), so code
// compiled with AVX-512 flags can never be merged by the linker into a function that a
// baseline CPU calls (the classic ODR hazard of multi-target builds).  For the same
// reason, kernel code must not instantiate std:: templates.  See csrc/README.md.
#pragma once

#include <stddef.h>
#include <stdint.h>

#if defined(MEDIMG_TARGET_SCALAR)
#define MEDIMG_LANES 1
#elif defined(MEDIMG_TARGET_SSE4)
#define MEDIMG_LANES 4
#include <immintrin.h>
#elif defined(MEDIMG_TARGET_AVX2)
#define MEDIMG_LANES 8
#include <immintrin.h>
#elif defined(MEDIMG_TARGET_AVX512)
#define MEDIMG_LANES 16
#include <immintrin.h>
#elif defined(MEDIMG_TARGET_NEON)
#define MEDIMG_LANES 4
#include <arm_neon.h>
#else
#error "define one MEDIMG_TARGET_<NAME> before including simd.hpp"
#endif

namespace {
namespace simd {

constexpr int kLanes = MEDIMG_LANES;

// vf: float lanes; vi: int32 lanes.  Double lanes: vdn below (one native register).
#if MEDIMG_LANES == 1
using vf = float;
using vi = int32_t;
#else
typedef float vf __attribute__((vector_size(MEDIMG_LANES * 4)));
typedef int32_t vi __attribute__((vector_size(MEDIMG_LANES * 4)));
#endif

static inline vf load(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
static inline void store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
// Stores the first n lanes (0 < n <= kLanes).
static inline void store_n(float* p, vf v, ptrdiff_t n) {
  __builtin_memcpy(p, &v, static_cast<size_t>(n) * sizeof(float));
}
static inline vf set1(float x) { return vf{} + x; }

// Fused multiply-add a * b + c where the target has it (AVX2, AVX-512, NEON), else
// a * b + c with two roundings (scalar, SSE4).  Every target TU is compiled with
// -ffp-contract=off, so this is the only place FMAs appear: results are reproducible
// across compilers, and kernels that must match float64 references bit for bit (LBP)
// are not perturbed by contraction.
static inline vf fmadd(vf a, vf b, vf c) {
#if defined(MEDIMG_TARGET_AVX2)
  return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#elif defined(MEDIMG_TARGET_AVX512)
  return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(MEDIMG_TARGET_NEON)
  return (vf)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);
#else
  return a * b + c;
#endif
}

static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf clamp(vf x, vf lo, vf hi) { return vmin(vmax(x, lo), hi); }
static inline vf vabs(vf a) { return vmax(a, -a); }

static inline vf vsqrt(vf a) {
#if defined(MEDIMG_TARGET_SCALAR)
  return __builtin_sqrtf(a);
#elif defined(MEDIMG_TARGET_SSE4)
  return (vf)_mm_sqrt_ps((__m128)a);
#elif defined(MEDIMG_TARGET_AVX2)
  return (vf)_mm256_sqrt_ps((__m256)a);
#elif defined(MEDIMG_TARGET_AVX512)
  return (vf)_mm512_sqrt_ps((__m512)a);
#elif defined(MEDIMG_TARGET_NEON)
  return (vf)vsqrtq_f32((float32x4_t)a);
#endif
}

static inline vi to_int(vf a) {  // truncation toward zero
#if MEDIMG_LANES == 1
  return static_cast<int32_t>(a);
#else
  return __builtin_convertvector(a, vi);
#endif
}
static inline vf to_float(vi a) {
#if MEDIMG_LANES == 1
  return static_cast<float>(a);
#else
  return __builtin_convertvector(a, vf);
#endif
}
static inline vf bits_to_float(vi a) {
  vf r;
  __builtin_memcpy(&r, &a, sizeof r);
  return r;
}
static inline vf vfloor(vf a) {
  vf t = to_float(to_int(a));
  return t > a ? t - 1.0f : t;
}

// exp(x), relative error about 2e-7 (2 ulp) on [-80, 88]; inputs below -80 return
// exp(-80) ~ 1.8e-35 (kept a normal number: denormals are slow on x86).
// Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, a degree-6 Taylor
// polynomial for exp(r) (truncation error < |r|^7/7! ~ 1.2e-7), scaling by 2^n
// through the exponent bits.
static inline vf vexp(vf x) {
  x = clamp(x, set1(-80.0f), set1(88.3f));
  vf n = vfloor(x * 1.44269504088896341f + 0.5f);
  vf r = x - n * 0.693359375f;  // ln2 split: high part exact in float
  r = r + n * 2.12194440e-4f;   // low part: ln2 = 0.693359375 - 2.12194440e-4
  vf p = set1(1.0f / 720.0f);
  p = fmadd(p, r, set1(1.0f / 120.0f));
  p = fmadd(p, r, set1(1.0f / 24.0f));
  p = fmadd(p, r, set1(1.0f / 6.0f));
  p = fmadd(p, r, set1(0.5f));
  p = fmadd(p, r, set1(1.0f));
  p = fmadd(p, r, set1(1.0f));
  vi e = (to_int(n) + 127) << 23;
  return p * bits_to_float(e);
}

// out[l] = base[idx[l]] for every lane (hardware gather on AVX2 / AVX-512).
static inline vf gather(const float* base, vi idx) {
#if defined(MEDIMG_TARGET_AVX2)
  return (vf)_mm256_i32gather_ps(base, (__m256i)idx, 4);
#elif defined(MEDIMG_TARGET_AVX512)
  return (vf)_mm512_i32gather_ps((__m512i)idx, base, 4);
#elif MEDIMG_LANES == 1
  return base[idx];
#else
  vf r;
  for (int l = 0; l < kLanes; ++l) r[l] = base[idx[l]];
  return r;
#endif
}

static inline float lane(vf v, int i) {
#if MEDIMG_LANES == 1
  (void)i;
  return v;
#else
  return v[i];
#endif
}

static inline double reduce_sum(vf v) {
  double s = 0.0;
  for (int i = 0; i < kLanes; ++i) s += static_cast<double>(lane(v, i));
  return s;
}

// ---- masks and native-width doubles (used by csrc/kernels/stats.hpp) -----------------
// kLanes bytes p[0..kLanes) widened to int32 lanes (0..255).
static inline vi load_u8(const uint8_t* p) {
#if defined(MEDIMG_TARGET_SSE4)
  int32_t w;
  __builtin_memcpy(&w, p, sizeof w);
  return (vi)_mm_cvtepu8_epi32(_mm_cvtsi32_si128(w));
#elif defined(MEDIMG_TARGET_AVX2)
  long long w;
  __builtin_memcpy(&w, p, sizeof w);
  return (vi)_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(w));
#elif defined(MEDIMG_TARGET_AVX512)
  return (vi)_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#elif defined(MEDIMG_TARGET_NEON)
  uint32_t w;
  __builtin_memcpy(&w, p, sizeof w);
  const uint16x8_t h = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(w)));
  return (vi)vmovl_u16(vget_low_u16(h));
#else
  return static_cast<int32_t>(*p);
#endif
}
// Stores the kLanes int32 lanes of v, each already within the range of T (int8_t or
// uint8_t), as kLanes bytes: the inverse of load_u8.  (GCC lowers a generic narrowing
// __builtin_convertvector element by element on SSE4/AVX2; the packs are exact for
// in-range values: signed packs for int8, unsigned-saturating for uint8.)
template <typename T>
static inline void store_narrow8(T* p, vi v) {
  static_assert(sizeof(T) == 1, "bytes only");
  constexpr bool kSigned = static_cast<T>(-1) < static_cast<T>(0);
#if defined(MEDIMG_TARGET_SSE4)
  const __m128i w = _mm_packs_epi32((__m128i)v, (__m128i)v);
  const __m128i b = kSigned ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
  const int32_t word = _mm_cvtsi128_si32(b);
  __builtin_memcpy(p, &word, sizeof word);
#elif defined(MEDIMG_TARGET_AVX2)
  const __m128i w =
      _mm_packs_epi32(_mm256_castsi256_si128((__m256i)v), _mm256_extracti128_si256((__m256i)v, 1));
  const __m128i b = kSigned ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
#elif defined(MEDIMG_TARGET_AVX512)
  (void)kSigned;  // truncation is exact for in-range values of either signedness
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8((__m512i)v));
#elif defined(MEDIMG_TARGET_NEON)
  (void)kSigned;
  const int16x4_t h = vmovn_s32((int32x4_t)v);
  const int8x8_t b = vmovn_s16(vcombine_s16(h, h));
  const int32_t word = vget_lane_s32(vreinterpret_s32_s8(b), 0);
  __builtin_memcpy(p, &word, sizeof word);
#else
  (void)kSigned;
  *p = static_cast<T>(v);
#endif
}
static inline int32_t lane_i(vi v, int i) {
#if MEDIMG_LANES == 1
  (void)i;
  return v;
#else
  return v[i];
#endif
}

// vdn: double lanes filling ONE native register (kLanes / 2 lanes; scalar: 1 lane).  A
// double vector as wide as vf would span two registers, and GCC 12 keeps such vectors in
// memory and lowers their comparisons one element at a time.  f2d_lo / f2d_hi convert the low /
// high half of a vf (the scalar target has no high half: use f2d_hi only when kLanes > 1).
#if MEDIMG_LANES == 1
using vdn = double;
constexpr int kLanesD = 1;
#else
typedef double vdn __attribute__((vector_size(MEDIMG_LANES * 4)));
constexpr int kLanesD = MEDIMG_LANES / 2;
#endif
static inline vdn f2d_lo(vf a) {
#if defined(MEDIMG_TARGET_SSE4)
  return (vdn)_mm_cvtps_pd((__m128)a);
#elif defined(MEDIMG_TARGET_AVX2)
  return (vdn)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)a));
#elif defined(MEDIMG_TARGET_AVX512)
  return (vdn)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)a));
#elif defined(MEDIMG_TARGET_NEON)
  return (vdn)vcvt_f64_f32(vget_low_f32((float32x4_t)a));
#else
  return static_cast<double>(a);
#endif
}
static inline vdn f2d_hi(vf a) {
#if defined(MEDIMG_TARGET_SSE4)
  return (vdn)_mm_cvtps_pd(_mm_movehl_ps((__m128)a, (__m128)a));
#elif defined(MEDIMG_TARGET_AVX2)
  return (vdn)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)a, 1));
#elif defined(MEDIMG_TARGET_AVX512)
  return (vdn)_mm512_cvtps_pd(
      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd((__m512)a), 1)));
#elif defined(MEDIMG_TARGET_NEON)
  return (vdn)vcvt_high_f64_f32((float32x4_t)a);
#else
  (void)a;
  return 0.0;
#endif
}
static inline vdn set1dn(double x) { return vdn{} + x; }
// vun / vmn: uint64 / int64 lanes matching vdn (bit patterns, masks of vdn comparisons).
#if MEDIMG_LANES == 1
using vun = uint64_t;
using vmn = int64_t;
#else
typedef uint64_t vun __attribute__((vector_size(MEDIMG_LANES * 4)));
typedef int64_t vmn __attribute__((vector_size(MEDIMG_LANES * 4)));
#endif
static inline vdn load_dn(const double* p) {
  vdn v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
static inline void store_dn(double* p, vdn v) { __builtin_memcpy(p, &v, sizeof v); }
static inline void store_dn_n(double* p, vdn v, ptrdiff_t n) {
  __builtin_memcpy(p, &v, static_cast<size_t>(n) * sizeof(double));
}
static inline vun set1un(uint64_t x) { return vun{} + x; }
static inline vun bits_of_dn(vdn x) {
  vun u;
  __builtin_memcpy(&u, &x, sizeof u);
  return u;
}
static inline vdn double_of_un(vun u) {
  vdn x;
  __builtin_memcpy(&x, &u, sizeof x);
  return x;
}
// Two vdn (low half, high half) rounded to one vf (scalar target: lo only).
static inline vf dn2f(vdn lo, vdn hi) {
#if defined(MEDIMG_TARGET_SSE4)
  return (vf)_mm_movelh_ps(_mm_cvtpd_ps((__m128d)lo), _mm_cvtpd_ps((__m128d)hi));
#elif defined(MEDIMG_TARGET_AVX2)
  return (vf)_mm256_set_m128(_mm256_cvtpd_ps((__m256d)hi), _mm256_cvtpd_ps((__m256d)lo));
#elif defined(MEDIMG_TARGET_AVX512)
  return (vf)_mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps((__m512d)lo)),
                                _mm512_cvtpd_ps((__m512d)hi), 1);
#elif defined(MEDIMG_TARGET_NEON)
  return (vf)vcvt_high_f32_f64(vcvt_f32_f64((float64x2_t)lo), (float64x2_t)hi);
#else
  (void)hi;
  return static_cast<float>(lo);
#endif
}
static inline vi float_bits(vf a) {
  vi r;
  __builtin_memcpy(&r, &a, sizeof r);
  return r;
}
static inline double reduce_sum_dn(vdn v) {
#if MEDIMG_LANES == 1
  return v;
#else
  double s = 0.0;
  for (int i = 0; i < kLanesD; ++i) s += v[i];
  return s;
#endif
}

}  // namespace simd
}  // namespace
