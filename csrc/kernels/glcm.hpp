// Grey-level co-occurrence matrices and their properties.
// Included by csrc/kernels/target.cpp after simd.hpp and common.hpp.
//
// Counting (glcm_count_kernel) reproduces scikit-image's _glcm_loop
// (skimage/feature/_texture.pyx): for the offset (dr, dc) of every (distance, angle) -
// rounded half away from zero in Python, as skimage does - each pixel (r, c) with
// (r + dr, c + dc) inside the image adds one to P[image[r, c], image[r + dr, c + dc]].
// How it is made fast (a scatter of increments cannot use vector lanes):
//   * all offsets of a group of up to four are counted in one pass over the image: the
//     increments of one pixel are independent, and the image rows are read once;
//   * the K matrices are 48 words apart beyond L * L (glcm_matrix_stride): without the
//     padding the counters a pixel increments are a multiple of 4 KiB apart whenever the
//     neighbours have the same value, and the CPU's 4K-aliasing check serialises the
//     loads behind the stores (1.8x slower on the 256-level camera image);
//   * on flat regions every pixel increments the same cells, and each increment waits for
//     the previous store (store-to-load forwarding, ~5 cycles).  When the matrices are
//     small (glcm_copies) the columns count into four copies in turn, summed into the first
//     at the end with integer vector lanes, which quarters those dependency chains (two
//     copies: 1.3x on 32 levels; four: another 1.15-1.2x, 0.36 vs 0.41-0.45 ms on the
//     512x512 camera at 32 levels);
//   * the largest pixel value is checked first (vectorised), so no count lands outside;
//   * symmetric: P + P^T in place, tile by tile.
// The properties kernel (glcm_props_kernel) is one vectorised pass (native-width double
// lanes) over each matrix that gathers the sums the requested properties need - the
// marginals and sum of j c per row, sum c^2, max c, and if asked the i - j and i + j
// histograms and sum c ln c (a vectorised log) - skipping vectors of zeros, then O(L)
// vectorised work per matrix; see src/medimg_edge/features/_glcm.py for the definitions.
// Float64 input is checked on the fly (negative, NaN, infinite: the kernel returns false).
#pragma once

namespace {

namespace glcm {

// Native-width double lanes (simd::vdn: 8 on AVX-512, 4 on AVX2, 2 on SSE4 and NEON,
// 1 on scalar); see simd.hpp for why not a vf-wide double vector.
constexpr int kLanes = simd::kLanesD;
using vd = simd::vdn;
using vu = simd::vun;
using vm = simd::vmn;  // comparison masks
#if MEDIMG_LANES == 1
using vu32 = uint32_t;
#else
typedef uint32_t vu32 __attribute__((vector_size(kLanes * 4)));
#endif
using simd::bits_of_dn;
using simd::double_of_un;
using simd::load_dn;
using simd::reduce_sum_dn;
using simd::set1dn;
using simd::store_dn;
// kLanes uint32 counts as doubles (exact).
static inline vd load_u32(const uint32_t* p) {
  vu32 v;
  __builtin_memcpy(&v, p, sizeof v);
#if MEDIMG_LANES == 1
  return static_cast<double>(v);
#else
  return __builtin_convertvector(v, vd);
#endif
}
static inline vd load_any(const uint32_t* p) { return load_u32(p); }
static inline vd load_any(const double* p) { return load_dn(p); }
static inline vd vmaxd(vd a, vd b) { return a > b ? a : b; }
static inline double lane(vd v, int i) {
#if MEDIMG_LANES == 1
  (void)i;
  return v;
#else
  return v[i];
#endif
}
static inline double hmax(vd v) {
  double m = lane(v, 0);
  for (int i = 1; i < kLanes; ++i) m = lane(v, i) > m ? lane(v, i) : m;
  return m;
}
// iota = (0, 1, ..., kLanes - 1).
static inline vd lane_index() {
  vd iota = set1dn(0.0);
  for (int l = 0; l < kLanes; ++l) {
#if MEDIMG_LANES == 1
    iota = static_cast<double>(l);
#else
    iota[l] = static_cast<double>(l);
#endif
  }
  return iota;
}

static inline bool any_set(vm v) {
#if MEDIMG_LANES == 1
  return v != 0;
#else
  for (int i = 0; i < kLanes; ++i)
    if (v[i] != 0) return true;
  return false;
#endif
}
// Lanes that are negative, NaN or infinite.
static inline vm bad_lanes(vd c) {
  const double big = 1.7976931348623157e308;
  return static_cast<vm>((c < 0.0) | (c != c) | (c > big));
}
// True if any of the kLanes values at p is not +0.
template <typename T>
static inline bool any_nonzero(const T* p) {
  constexpr size_t bytes = sizeof(T) * kLanes;
  if constexpr (bytes < 8) {
    uint32_t w;
    __builtin_memcpy(&w, p, 4);
    return w != 0;
  } else {
    uint64_t acc = 0;
    for (size_t b = 0; b < bytes; b += 8) {
      uint64_t w;
      __builtin_memcpy(&w, reinterpret_cast<const unsigned char*>(p) + b, 8);
      acc |= w;
    }
    return acc != 0;
  }
}

// Natural logarithm of x >= 0 (x = 0 and subnormal x give finite nonsense, which the
// callers multiply by x).  x = 2^e m with m in [sqrt(2)/2, sqrt(2)) by integer operations
// on the bits (musl/fdlibm's reduction), then log(m) = f - f^2/2 + s (f^2/2 + R(s^2)),
// f = m - 1, s = f / (2 + f), R the Taylor series of 2 atanh(s) / s - 2 - ... to s^22
// (|s| < 0.172: truncation < 1e-18).  Error about 1 ulp.
static inline vd vlog(vd x) {
  const uint64_t kShift = 0x3FF0000000000000ull - 0x3FE6A09E667F3BCDull;
  const vu u = bits_of_dn(x) + kShift;
  const vu biased = u >> 52;  // 0 .. 2047
  const vd m = double_of_un((u & 0x000FFFFFFFFFFFFFull) + 0x3FE6A09E667F3BCDull);
  const vd e = double_of_un(biased | 0x4330000000000000ull) - (4503599627370496.0 + 1023.0);
  const vd f = m - 1.0;
  const vd s = f / (f + 2.0);
  const vd z = s * s;
  vd r = set1dn(2.0 / 23.0);
  r = r * z + 2.0 / 21.0;
  r = r * z + 2.0 / 19.0;
  r = r * z + 2.0 / 17.0;
  r = r * z + 2.0 / 15.0;
  r = r * z + 2.0 / 13.0;
  r = r * z + 2.0 / 11.0;
  r = r * z + 2.0 / 9.0;
  r = r * z + 2.0 / 7.0;
  r = r * z + 2.0 / 5.0;
  r = r * z + 2.0 / 3.0;
  r = r * z;
  const vd hfsq = 0.5 * f * f;
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  return e * ln2_hi - ((hfsq - (s * (hfsq + r) + e * ln2_lo)) - f);
}

// ---- counting -------------------------------------------------------------------------

// Counts the G offsets off[g] (pixel index differences) of columns [c0, c1) of the row
// starting at `a` into o[g]; column c goes to o[g] + (c - c0) % 4 * shift (the copies, or
// the same matrix when shift is 0).
template <typename T, int G>
static void count_run(const T* a, ptrdiff_t c0, ptrdiff_t c1, ptrdiff_t L, const ptrdiff_t* off,
                      uint32_t* const* o, ptrdiff_t shift) {
  ptrdiff_t c = c0;
  for (; c + 3 < c1; c += 4) {
    const ptrdiff_t i0 = static_cast<ptrdiff_t>(a[c]) * L;
    const ptrdiff_t i1 = static_cast<ptrdiff_t>(a[c + 1]) * L + shift;
    const ptrdiff_t i2 = static_cast<ptrdiff_t>(a[c + 2]) * L + 2 * shift;
    const ptrdiff_t i3 = static_cast<ptrdiff_t>(a[c + 3]) * L + 3 * shift;
    for (int g = 0; g < G; ++g) ++o[g][i0 + a[c + off[g]]];
    for (int g = 0; g < G; ++g) ++o[g][i1 + a[c + 1 + off[g]]];
    for (int g = 0; g < G; ++g) ++o[g][i2 + a[c + 2 + off[g]]];
    for (int g = 0; g < G; ++g) ++o[g][i3 + a[c + 3 + off[g]]];
  }
  for (; c < c1; ++c) {
    const ptrdiff_t i0 = static_cast<ptrdiff_t>(a[c]) * L;
    for (int g = 0; g < G; ++g) ++o[g][i0 + a[c + off[g]]];
  }
}

template <typename T>
static void count_group(const T* img, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t L,
                        const ptrdiff_t* dr, const ptrdiff_t* dc, int G, uint32_t** o,
                        ptrdiff_t shift) {
  ptrdiff_t r0[4], r1[4], c0[4], c1[4], off[4];
  ptrdiff_t rlo = rows, rhi = 0, cc0 = 0, cc1 = cols, rc0 = 0, rc1 = rows;
  for (int g = 0; g < G; ++g) {
    r0[g] = dr[g] < 0 ? -dr[g] : 0;
    r1[g] = dr[g] > 0 ? rows - dr[g] : rows;
    c0[g] = dc[g] < 0 ? -dc[g] : 0;
    c1[g] = dc[g] > 0 ? cols - dc[g] : cols;
    off[g] = dr[g] * cols + dc[g];
    rlo = r0[g] < rlo ? r0[g] : rlo;
    rhi = r1[g] > rhi ? r1[g] : rhi;
    rc0 = r0[g] > rc0 ? r0[g] : rc0;  // rows where every offset is inside
    rc1 = r1[g] < rc1 ? r1[g] : rc1;
    cc0 = c0[g] > cc0 ? c0[g] : cc0;  // columns where every offset is inside
    cc1 = c1[g] < cc1 ? c1[g] : cc1;
  }
  for (ptrdiff_t r = rlo; r < rhi; ++r) {
    const T* a = img + r * cols;
    if (r >= rc0 && r < rc1 && cc0 < cc1) {
      switch (G) {
        case 1:
          count_run<T, 1>(a, cc0, cc1, L, off, o, shift);
          break;
        case 2:
          count_run<T, 2>(a, cc0, cc1, L, off, o, shift);
          break;
        case 3:
          count_run<T, 3>(a, cc0, cc1, L, off, o, shift);
          break;
        default:
          count_run<T, 4>(a, cc0, cc1, L, off, o, shift);
          break;
      }
      for (int g = 0; g < G; ++g) {
        count_run<T, 1>(a, c0[g], cc0, L, off + g, o + g, 0);
        count_run<T, 1>(a, cc1, c1[g], L, off + g, o + g, 0);
      }
    } else {
      for (int g = 0; g < G; ++g)
        if (r >= r0[g] && r < r1[g] && c0[g] < c1[g])
          count_run<T, 1>(a, c0[g], c1[g], L, off + g, o + g, 0);
    }
  }
}

// Largest value of the image (vectorised by the compiler on the SIMD targets).
template <typename T>
static T image_max(const T* img, ptrdiff_t n) {
  T m = 0;
  for (ptrdiff_t i = 0; i < n; ++i) m = img[i] > m ? img[i] : m;
  return m;
}

// dst[i] += src[i] for n words, with int32 vector lanes (wrapping, as uint32).
static void add_counts(uint32_t* dst, const uint32_t* src, ptrdiff_t n) {
  using simd::kLanes;
  using simd::vi;
  ptrdiff_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    vi a, b;
    __builtin_memcpy(&a, dst + i, sizeof a);
    __builtin_memcpy(&b, src + i, sizeof b);
    a += b;
    __builtin_memcpy(dst + i, &a, sizeof a);
  }
  for (; i < n; ++i) dst[i] += src[i];
}

// m + m^T in place (L x L), in tiles so that both the row and the column stay in cache.
static void symmetrize(uint32_t* m, ptrdiff_t L) {
  constexpr ptrdiff_t B = 16;
  for (ptrdiff_t bi = 0; bi < L; bi += B) {
    const ptrdiff_t ie = bi + B < L ? bi + B : L;
    for (ptrdiff_t bj = bi; bj < L; bj += B) {
      const ptrdiff_t je = bj + B < L ? bj + B : L;
      for (ptrdiff_t i = bi; i < ie; ++i) {
        for (ptrdiff_t j = bj == bi ? i : bj; j < je; ++j) {
          const uint32_t s = m[i * L + j] + m[j * L + i];
          m[i * L + j] = s;
          m[j * L + i] = s;
        }
      }
    }
  }
}

}  // namespace glcm

static bool glcm_count_kernel(const medimg::GlcmArgs& a, int64_t* max_value) {
  using namespace glcm;
  const ptrdiff_t L = a.levels, K = a.n_offsets, n = a.rows * a.cols;
  const ptrdiff_t stride = medimg::glcm_matrix_stride(L);
  int64_t mx = 0;
  if (a.dtype == medimg::kGlcmU8) {
    if (L < 256) mx = image_max(static_cast<const uint8_t*>(a.image), n);
  } else {
    mx = image_max(static_cast<const uint16_t*>(a.image), n);
  }
  *max_value = mx;
  if (mx >= L) return false;

  const int copies = medimg::glcm_copies(L, a.n_offsets);
  const ptrdiff_t shift = copies > 1 ? medimg::glcm_copy_shift(L, a.n_offsets) : 0;
  __builtin_memset(a.out, 0, medimg::glcm_out_words(L, a.n_offsets) * sizeof(uint32_t));
  for (ptrdiff_t g0 = 0; g0 < K; g0 += 4) {
    const int G = K - g0 < 4 ? static_cast<int>(K - g0) : 4;
    uint32_t* o[4];
    for (int g = 0; g < G; ++g) o[g] = a.out + (g0 + g) * stride;
    if (a.dtype == medimg::kGlcmU8)
      count_group(static_cast<const uint8_t*>(a.image), a.rows, a.cols, L, a.dr + g0, a.dc + g0, G,
                  o, shift);
    else
      count_group(static_cast<const uint16_t*>(a.image), a.rows, a.cols, L, a.dr + g0, a.dc + g0, G,
                  o, shift);
  }
  for (int j = 1; j < copies; ++j) add_counts(a.out, a.out + j * shift, K * stride);
  if (a.symmetric)
    for (ptrdiff_t k = 0; k < K; ++k) symmetrize(a.out + k * stride, L);
  return true;
}

// out[k * cells + t] = counts[k * stride + t] / (sum over t of matrix k), 0 if that sum
// is 0 (skimage divides by 1 then).  A true division, as skimage does.
static void glcm_normalize_kernel(const uint32_t* counts, ptrdiff_t K, ptrdiff_t cells,
                                  ptrdiff_t stride, double* out) {
  using namespace glcm;
  for (ptrdiff_t k = 0; k < K; ++k) {
    const uint32_t* c = counts + k * stride;
    double* o = out + k * cells;
    vd acc = set1dn(0.0);
    ptrdiff_t t = 0;
    for (; t + kLanes <= cells; t += kLanes) acc += load_u32(c + t);
    double sum = reduce_sum_dn(acc);
    for (; t < cells; ++t) sum += static_cast<double>(c[t]);
    if (sum == 0.0) sum = 1.0;
    const vd vs = set1dn(sum);
    for (t = 0; t + kLanes <= cells; t += kLanes) store_dn(o + t, load_u32(c + t) / vs);
    for (; t < cells; ++t) o[t] = static_cast<double>(c[t]) / sum;
  }
}

namespace glcm {

// Sums of one L x L matrix gathered by a single vectorised pass (see props_of).
struct Sums {
  double sq = 0.0;     // sum c^2
  double clogc = 0.0;  // sum c ln c (kLog)
  double max = 0.0;    // max c
  bool bad = false;    // a negative, NaN or infinite entry (float64 input only)
};

// px[i] = sum_j c_ij, jc[i] = sum_j j c_ij, py[j] = sum_i c_ij and, if asked for (kDif,
// kSum), the diagonal sums dif[j - i + L - 1] and sum[i + j]; every array has kLanes
// values of zero slack after its end.  Vectors of zeros (most of a 256-level matrix) are
// skipped.
template <typename T, bool kDif, bool kSum, bool kLog>
static Sums scan_matrix(const T* P, ptrdiff_t L, double* px, double* jc, double* py, double* dif,
                        double* sum) {
  constexpr bool kCheck = sizeof(T) == sizeof(double);
  for (ptrdiff_t t = 0; t < L + kLanes; ++t) px[t] = jc[t] = py[t] = 0.0;
  for (ptrdiff_t t = 0; t < 2 * L + kLanes; ++t) dif[t] = sum[t] = 0.0;
  const vd iota = lane_index();
  vd vsq = set1dn(0.0), vent = set1dn(0.0), vmx = set1dn(0.0);
  vm bad = vm{};
  const ptrdiff_t full = L - L % kLanes;
  for (ptrdiff_t i = 0; i < L; ++i) {
    const T* row = P + i * L;
    double* d = dif + (L - 1 - i);
    double* s = sum + i;
    vd rs = set1dn(0.0), js = set1dn(0.0);
    auto body = [&](vd c, ptrdiff_t j) {
      rs += c;
      js += c * (iota + static_cast<double>(j));
      vsq += c * c;
      vmx = vmaxd(vmx, c);
      if constexpr (kLog) vent += c * vlog(c);  // c = 0: 0 * (finite) = 0
      if constexpr (kCheck) bad |= bad_lanes(c);
      store_dn(py + j, load_dn(py + j) + c);
      if constexpr (kDif) store_dn(d + j, load_dn(d + j) + c);
      if constexpr (kSum) store_dn(s + j, load_dn(s + j) + c);
    };
    for (ptrdiff_t j = 0; j < full; j += kLanes)
      if (any_nonzero(row + j)) body(load_any(row + j), j);
    if (full < L) {
      T tail[kLanes] = {};
      for (ptrdiff_t j = full; j < L; ++j) tail[j - full] = row[j];
      body(load_any(tail), full);
    }
    px[i] = reduce_sum_dn(rs);
    jc[i] = reduce_sum_dn(js);
  }
  Sums out;
  out.sq = reduce_sum_dn(vsq);
  out.clogc = reduce_sum_dn(vent);
  out.max = hmax(vmx);
  out.bad = any_set(bad);
  return out;
}

// -sum q log2 q over q = v[t] / total, t < n (0 log 0 = 0); v has kLanes values of zero
// slack after n.  A true division, so that v[t] = total gives q = 1 and log2 q = 0
// exactly (a flat region has zero marginal entropies, hence IMC1 = IMC2 = 0).
static double entropy2(const double* v, ptrdiff_t n, double total) {
  const vd vt = set1dn(total);
  vd acc = set1dn(0.0);
  for (ptrdiff_t t = 0; t < n; t += kLanes) {
    const vd q = load_dn(v + t) / vt;
    acc += q * vlog(q);  // q = 0: 0 * (finite) = 0
  }
  return -reduce_sum_dn(acc) / 0.69314718055994530942;
}

// The properties of one matrix into out[p * K] (p = property index): every property
// `need` asks for (medimg::GlcmNeed bits), NaN for the others.
template <typename T, bool kDif, bool kSum, bool kLog>
static bool props_of(const T* P, ptrdiff_t L, ptrdiff_t K, double* out, double* scratch) {
  using namespace medimg;
  double* px = scratch;
  double* jc = px + L + kLanes;
  double* py = jc + L + kLanes;
  double* dif = py + L + kLanes;
  double* sum = dif + 2 * L + kLanes;
  const Sums s = scan_matrix<T, kDif, kSum, kLog>(P, L, px, jc, py, dif, sum);
  if (s.bad) return false;
  double n = 0.0;
  for (ptrdiff_t i = 0; i < L; ++i) n += px[i];
  if (!(n > 0.0)) {  // an empty matrix: skimage's properties of an all-zero P
    for (int p = 0; p < kGlcmProps; ++p) out[p * K] = 0.0;
    out[kGlcmCorrelation * K] = 1.0;
    return true;
  }
  for (int p = 0; p < kGlcmProps; ++p) out[p * K] = __builtin_nan("");
  const double dl = static_cast<double>(L);
  const vd iota = lane_index();
  // Marginal moments (vectors over i; the slack after L is zero).
  vd vmx = set1dn(0.0), vmy = set1dn(0.0), vij = set1dn(0.0);
  for (ptrdiff_t i = 0; i < L; i += kLanes) {
    const vd vi = iota + static_cast<double>(i);
    vmx += vi * load_dn(px + i);
    vmy += vi * load_dn(py + i);
    vij += vi * load_dn(jc + i);
  }
  const double mux = reduce_sum_dn(vmx) / n, muy = reduce_sum_dn(vmy) / n,
               ijsum = reduce_sum_dn(vij);
  vd vvx = set1dn(0.0), vvy = set1dn(0.0), vcov = set1dn(0.0);
  for (ptrdiff_t i = 0; i < L; i += kLanes) {
    const vd vi = iota + static_cast<double>(i);
    const vd di = vi - mux, dj = vi - muy, cx = load_dn(px + i);
    vvx += di * di * cx;
    vvy += dj * dj * load_dn(py + i);
    vcov += di * (load_dn(jc + i) - muy * cx);
  }
  const double varx = reduce_sum_dn(vvx) / n, vary = reduce_sum_dn(vvy) / n,
               cov = reduce_sum_dn(vcov) / n;
  const double stdx = __builtin_sqrt(varx), stdy = __builtin_sqrt(vary);
  out[kGlcmASM * K] = s.sq / (n * n);
  out[kGlcmEnergy * K] = __builtin_sqrt(s.sq / (n * n));
  out[kGlcmCorrelation * K] = (stdx < 1e-15 || stdy < 1e-15) ? 1.0 : cov / (stdx * stdy);
  out[kGlcmMean * K] = mux;
  out[kGlcmVariance * K] = varx;
  out[kGlcmStd * K] = stdx;
  out[kGlcmAutocorrelation * K] = ijsum / n + mux + muy + 1.0;
  out[kGlcmMaximumProbability * K] = s.max / n;

  if constexpr (kDif) {
    // |i - j| = k histogram, folded in place into dk[k] = dif[L - 1 + k] (zero slack).
    double* dk = dif + (L - 1);
    for (ptrdiff_t k = 1; k < L; ++k) dk[k] += dif[L - 1 - k];
    vd vcon = set1dn(0.0), vdis = set1dn(0.0), vhom = set1dn(0.0), vid = set1dn(0.0);
    vd vidn = set1dn(0.0), vidmn = set1dn(0.0), vinv = set1dn(0.0);
    for (ptrdiff_t k = 0; k < L; k += kLanes) {
      const vd vk = iota + static_cast<double>(k), c = load_dn(dk + k), k2 = vk * vk;
      vcon += k2 * c;
      vdis += vk * c;
      vhom += c / (1.0 + k2);
      vid += c / (1.0 + vk);
      vidn += c / (1.0 + vk / dl);
      vidmn += c / (1.0 + k2 / (dl * dl));
      vinv += (vk > 0.0 ? c : set1dn(0.0)) / (vk > 0.0 ? k2 : set1dn(1.0));
    }
    const double dissim = reduce_sum_dn(vdis) / n;
    vd vdv = set1dn(0.0);
    for (ptrdiff_t k = 0; k < L; k += kLanes) {
      const vd e = iota + (static_cast<double>(k) - dissim);
      vdv += e * e * load_dn(dk + k);
    }
    out[kGlcmContrast * K] = reduce_sum_dn(vcon) / n;
    out[kGlcmDissimilarity * K] = dissim;
    out[kGlcmHomogeneity * K] = reduce_sum_dn(vhom) / n;
    out[kGlcmDifferenceAverage * K] = dissim;
    out[kGlcmDifferenceEntropy * K] = entropy2(dk, L, n);
    out[kGlcmDifferenceVariance * K] = reduce_sum_dn(vdv) / n;
    out[kGlcmId * K] = reduce_sum_dn(vid) / n;
    out[kGlcmIdmn * K] = reduce_sum_dn(vidmn) / n;
    out[kGlcmIdn * K] = reduce_sum_dn(vidn) / n;
    out[kGlcmInverseVariance * K] = reduce_sum_dn(vinv) / n;
  }
  if constexpr (kSum) {
    // i + j = k histogram (0-based k, 2L - 1 values, zero slack).
    vd vtend = set1dn(0.0), vshade = set1dn(0.0), vprom = set1dn(0.0), vsavg = set1dn(0.0);
    for (ptrdiff_t k = 0; k < 2 * L - 1; k += kLanes) {
      const vd vk = iota + static_cast<double>(k), c = load_dn(sum + k);
      const vd e = vk - (mux + muy), e2 = e * e;
      vtend += e2 * c;
      vshade += e2 * e * c;
      vprom += e2 * e2 * c;
      vsavg += (vk + 2.0) * c;
    }
    out[kGlcmClusterProminence * K] = reduce_sum_dn(vprom) / n;
    out[kGlcmClusterShade * K] = reduce_sum_dn(vshade) / n;
    out[kGlcmClusterTendency * K] = reduce_sum_dn(vtend) / n;
    out[kGlcmSumAverage * K] = reduce_sum_dn(vsavg) / n;
    out[kGlcmSumEntropy * K] = entropy2(sum, 2 * L - 1, n);
  }
  if constexpr (kLog) {
    // H = ln n - (sum c ln c) / n; exactly 0 for a single non-zero cell (the only case
    // with H = 0), where the two terms would differ by rounding.
    const double entropy_raw = __builtin_log(n) - s.clogc / n;
    const double entropy = (s.max == n || !(entropy_raw > 0.0)) ? 0.0 : entropy_raw;
    const double hxy = entropy / 0.69314718055994530942;
    const double hx = entropy2(px, L, n), hy = entropy2(py, L, n);
    const double hbig = hx > hy ? hx : hy;
    // Mutual information HXY1 - HXY = HXY2 - HXY (HXY1 = HXY2 = HX + HY), set to 0 below
    // the rounding noise of the entropies (IMC2 = sqrt(2 m) would magnify noise of 1e-16
    // into 1e-8 for independent distributions).
    double mutual = hx + hy - hxy;
    if (mutual <= 1e-13 * (hx + hy)) mutual = 0.0;
    out[kGlcmEntropy * K] = entropy;
    out[kGlcmJointEntropy * K] = hxy;
    out[kGlcmImc1 * K] = hbig > 0.0 ? -mutual / hbig : 0.0;
    out[kGlcmImc2 * K] = mutual > 0.0 ? __builtin_sqrt(1.0 - __builtin_exp(-2.0 * mutual)) : 0.0;
  }
  return true;
}

template <typename T, bool kDif, bool kSum, bool kLog>
static bool props_all(const void* P, ptrdiff_t L, ptrdiff_t K, ptrdiff_t stride, double* out,
                      double* scratch) {
  for (ptrdiff_t k = 0; k < K; ++k)
    if (!props_of<T, kDif, kSum, kLog>(static_cast<const T*>(P) + k * stride, L, K, out + k,
                                       scratch))
      return false;
  return true;
}

template <typename T>
static bool props_dispatch(const void* P, int need, ptrdiff_t L, ptrdiff_t K, ptrdiff_t stride,
                           double* out, double* scratch) {
  switch (need & 7) {
    case 0:
      return props_all<T, false, false, false>(P, L, K, stride, out, scratch);
    case 1:
      return props_all<T, true, false, false>(P, L, K, stride, out, scratch);
    case 2:
      return props_all<T, false, true, false>(P, L, K, stride, out, scratch);
    case 3:
      return props_all<T, true, true, false>(P, L, K, stride, out, scratch);
    case 4:
      return props_all<T, false, false, true>(P, L, K, stride, out, scratch);
    case 5:
      return props_all<T, true, false, true>(P, L, K, stride, out, scratch);
    case 6:
      return props_all<T, false, true, true>(P, L, K, stride, out, scratch);
    default:
      return props_all<T, true, true, true>(P, L, K, stride, out, scratch);
  }
}

}  // namespace glcm

static bool glcm_props_kernel(const void* P, int is_double, int need, ptrdiff_t L, ptrdiff_t K,
                              ptrdiff_t stride, double* out, double* scratch) {
  static_assert(medimg::kGlcmNeedDif == 1 && medimg::kGlcmNeedSum == 2 && medimg::kGlcmNeedLog == 4,
                "props_dispatch maps these bits");
  return is_double ? glcm::props_dispatch<double>(P, need, L, K, stride, out, scratch)
                   : glcm::props_dispatch<uint32_t>(P, need, L, K, stride, out, scratch);
}

}  // namespace
