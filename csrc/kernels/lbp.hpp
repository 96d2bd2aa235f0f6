// Local binary patterns, bit-identical to skimage.feature.local_binary_pattern.
// Included by csrc/kernels/target.cpp after simd.hpp and common.hpp.
//
// What scikit-image computes (skimage/feature/_texture.pyx, _local_binary_pattern, with
// bilinear_interpolation and get_pixel2d of skimage/_shared/interpolation.pxd), all in
// float64 on the image converted to float64:
//   * neighbour i of pixel (r, c) is sampled at y = r + rp[i], x = c + cp[i] (one rounded
//     addition each; rp, cp are the offsets rounded to 5 decimals, computed in Python);
//   * y0 = floor(y), y1 = ceil(y), dy = y - y0, likewise x0, x1, dx; pixels outside the
//     image read 0 (mode 'C', cval 0);
//   * top = (1 - dx) I[y0, x0] + dx I[y0, x1], bottom = (1 - dx) I[y1, x0] + dx I[y1, x1],
//     t_i = (1 - dy) top + dy bottom: every product and sum rounded on its own (no FMA:
//     target.cpp is compiled with -ffp-contract=off, and scikit-image's x86-64 wheels
//     target the baseline ISA, which has no FMA);
//   * bit s_i = (t_i - I[r, c] >= 0); the code of each method from the bits (finish()).
//
// How it is computed here, with the same operations on the same operands:
//   * floor(c + cp) = c + floor(cp) for every column, and likewise for rows: cp is a
//     multiple of 1e-5 (or an integer, then c + cp is exact) and |c + cp| < 2^18, so the
//     rounding of c + cp (< 2^-35) never crosses an integer.  The pixels of neighbour i
//     are at fixed offsets from (r, c): contiguous vector loads over consecutive pixels;
//   * dx depends only on (c, cp): the column weights 1 - dx and dx of every distinct
//     non-integer cp are tabulated once per call (skimage's double operations, per
//     column); dy depends only on (r, rp) and is computed once per output row;
//   * `top` depends only on the image row y0 and on cp, `bottom` on y1 and cp: the
//     horizontally interpolated row H_cp(y) = (1 - dx) I[y, x0] + dx I[y, x1] is computed
//     once and serves every neighbour with that cp, as top or bottom, for every output
//     row that needs it (RowCache); a neighbour is then (1 - dy) H(y0) + dy H(y1);
//   * an integer offset has weight exactly 0: skimage's sum (1 - 0) a + 0 b is then `a`
//     up to the sign of a zero, which no output depends on (t_i only enters t_i - I >= 0,
//     sums of t_i and squares), so those terms are skipped (Tap::kind);
//   * image rows are converted to float64 (from uint8/uint16/float32/float64) when first
//     needed, with zero columns on both sides; rows outside the image are a zero row, so
//     no load leaves the buffers;
//   * blocks of kBlock vectors of consecutive pixels of one row, native-width double
//     lanes: each neighbour adds its bit 2^i to a per-pixel code (a double, exact) or t and
//     t^2 to the two sums of 'var', in registers; finish() turns the bit code into the
//     method's value with integer bit operations on uint64 lanes, through a table of all
//     2^P codes (built with finish()) when P <= kLbpTableMaxP;
//   * every buffer row starts on a 64-byte boundary, so loads at column offset 0 (the
//     centre, H rows, weights) are aligned.
#pragma once

namespace {

namespace lbp {

// Native-width double lanes (simd::vdn: 8 on AVX-512, 4 on AVX2, 2 on SSE4 and NEON,
// 1 on scalar); see simd.hpp for why not a vf-wide double vector.
constexpr int kLanes = simd::kLanesD;
using vd = simd::vdn;
using vu = simd::vun;
using simd::bits_of_dn;
using simd::double_of_un;
using simd::load_dn;
using simd::set1dn;
using simd::set1un;
using simd::store_dn;
using simd::store_dn_n;

// Exact conversions between integer-valued doubles and uint64 lanes through the mantissa
// of 2^52 (native on every target, unlike int64 <-> double conversions before AVX-512DQ).
constexpr double kTwo52 = 4503599627370496.0;
constexpr uint64_t kTwo52Bits = 0x4330000000000000ull;
static inline vu to_u(vd x) { return bits_of_dn(x + kTwo52) ^ kTwo52Bits; }    // 0 <= x < 2^52
static inline vd to_d(vu u) { return double_of_un(u | kTwo52Bits) - kTwo52; }  // u < 2^52

// Number of set bits of x < 2^32.
static inline vu popcount32(vu x) {
  x = x - ((x >> 1) & 0x55555555u);
  x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
  x = (x + (x >> 4)) & 0x0F0F0F0Fu;
  x = x + (x >> 8);
  x = x + (x >> 16);
  return x & 0x3Fu;
}

// Number of trailing zeros of x (0 < x < 2^32).
static inline vu ctz32(vu x) { return popcount32(((x & (0 - x)) - 1) & 0xFFFFFFFFu); }

// lut[u] for every lane (u < 2^32).
static inline vd gather_d(const double* lut, vu u) {
#if defined(MEDIMG_TARGET_AVX512)
  return (vd)_mm512_i64gather_pd((__m512i)u, lut, 8);
#elif defined(MEDIMG_TARGET_AVX2)
  return (vd)_mm256_i64gather_pd(lut, (__m256i)u, 8);
#elif MEDIMG_LANES == 1
  return lut[u];
#else
  vd r;
  for (int l = 0; l < kLanes; ++l) r[l] = lut[u[l]];
  return r;
#endif
}

// The method's value from the bit code u (bit i = s_i) of P <= 32 neighbours.
template <int kMethod>
__attribute__((always_inline)) static inline vd finish(vu u, int P) {
  const double p = static_cast<double>(P);
  if constexpr (kMethod == medimg::kLbpDefault) {
    // skimage sums s_i * weights[i] with int32 weights 2 ** i: 2^31 wraps to -2^31.
    const vd code = to_d(u);
    return P == 32 ? (code >= 2147483648.0 ? code - 4294967296.0 : code) : code;
  } else if constexpr (kMethod == medimg::kLbpRor) {
    // skimage: the minimum of the C int code and its P - 1 right rotations
    // (v >> 1) | ((v & 1) << (P - 1)), with the int's arithmetic shift (which keeps bit
    // 31 set when P = 32).  Compared as signed: key = bits ^ 2^31 orders like the int.
    const uint64_t sign = 0x80000000u;
    vu cur = u, best = u ^ sign;
    for (int k = 1; k < P; ++k) {
      cur = (cur >> 1) | (cur & sign) | ((cur & 1u) << (P - 1));
      const vu key = cur ^ sign;
      best = key < best ? key : best;
    }
    return to_d(best) - 2147483648.0;
  } else {
    // Uniform: at most 2 changes between consecutive bits s_i, s_i+1 (i < P - 1; not
    // across s_P-1 -> s_0, as skimage counts them).
    const uint64_t low = P == 1 ? 0u : (uint64_t(1) << (P - 1)) - 1u;
    const vd ones = to_d(popcount32(u));
    const vd changes = to_d(popcount32((u ^ (u >> 1)) & low));
    if constexpr (kMethod == medimg::kLbpUniform) {
      return changes <= 2.0 ? ones : set1dn(p + 1.0);
    } else {
      // nri_uniform: 1 + (n_ones - 1) P + rot, rot from the first one and first zero.
      const uint64_t all = (uint64_t(1) << P) - 1u;
      const vd first_one = to_d(ctz32(u | (u == 0u ? set1un(1) : set1un(0))));
      const vd first_zero = to_d(ctz32((u ^ all) | (u == all ? set1un(1) : set1un(0))));
      const vd rot = first_one == 0.0 ? ones - first_zero : p - first_one;
      vd code = 1.0 + (ones - 1.0) * p + rot;
      code = ones == 0.0 ? set1dn(0.0) : code;
      code = ones == p ? set1dn(p * (p - 1.0) + 1.0) : code;
      return changes <= 2.0 ? code : set1dn(p * (p - 1.0) + 2.0);
    }
  }
}

// Most rows a RowCache holds (2P + 1: the centre row and floor/ceil of every row offset).
constexpr int kMaxSlots = 2 * medimg::kLbpMaxP + 1;
// Row of an empty slot: below every row, so empty slots are filled first.
constexpr ptrdiff_t kNoRow = -(ptrdiff_t(1) << 62);

// Rows (converted image rows, or interpolated rows H) kept for the output rows that need
// them: for output row r, update() makes the rows r + rel[k] inside the image present,
// filling missing ones into the slot of the lowest row no longer needed.  With as many
// slots as the span of rel, every row is filled once per call.
struct RowCache {
  int nrel, nslots;
  ptrdiff_t rel[kMaxSlots];  // distinct relative rows
  ptrdiff_t row[kMaxSlots];  // image row held by each slot (kNoRow: none)
  double* data[kMaxSlots];

  void add_rel(ptrdiff_t d) {
    for (int k = 0; k < nrel; ++k)
      if (rel[k] == d) return;
    rel[nrel++] = d;
  }
  ptrdiff_t span() const {
    ptrdiff_t lo = rel[0], hi = rel[0];
    for (int k = 1; k < nrel; ++k) {
      lo = rel[k] < lo ? rel[k] : lo;
      hi = rel[k] > hi ? rel[k] : hi;
    }
    return hi - lo + 1;
  }
  // The slot holding image row y (0 <= y < rows), else nullptr.
  const double* find(ptrdiff_t y) const {
    if (y < 0) return nullptr;
    for (int s = 0; s < nslots; ++s)
      if (row[s] == y) return data[s];
    return nullptr;
  }
  // fill(y, dst) -> bool; returns false as soon as a fill does.
  template <typename Fill>
  bool update(ptrdiff_t r, ptrdiff_t rows, Fill fill) {
    bool keep[kMaxSlots] = {};
    ptrdiff_t missing[kMaxSlots];
    int nmissing = 0;
    for (int k = 0; k < nrel; ++k) {
      const ptrdiff_t y = r + rel[k];
      if (y < 0 || y >= rows) continue;
      int found = -1;
      for (int s = 0; s < nslots && found < 0; ++s)
        if (row[s] == y) found = s;
      if (found >= 0)
        keep[found] = true;
      else
        missing[nmissing++] = y;
    }
    for (int m = 0; m < nmissing; ++m) {
      int best = -1;
      for (int s = 0; s < nslots; ++s)
        if (!keep[s] && (best < 0 || row[s] < row[best])) best = s;
      keep[best] = true;  // nslots >= nrel: there is always a free slot
      row[best] = missing[m];
      if (!fill(missing[m], data[best])) return false;
    }
    return true;
  }
};

// Neighbours with the same (non-integer) column offset share their weights and H rows.
struct Group {
  double cp;
  ptrdiff_t o0, o1;  // floor(cp), ceil(cp), clamped to [-pad, pad]
  double* w0;        // per column c: 1 - dx
  double* w1;        // per column c: dx
  RowCache cache;    // H rows
};

// A neighbour: t = p0[c] (kOne) or v0 p0[c] + v1 p1[c] (kTwo), with p0, p1 image rows
// (shifted by the column offset) or H rows of the neighbour's group.
enum Kind : int { kOne = 0, kTwo = 1 };

struct Tap {
  int kind;
  int group;         // -1: image rows (integer cp)
  double rp;         // row offset
  ptrdiff_t fy, cy;  // floor(rp), ceil(rp)
  ptrdiff_t o0;      // column offset of image rows, clamped to [-pad, pad]
  // per output row:
  const double* p0;
  const double* p1;
  double v0, v1;  // 1 - dy, dy
};

// Pixels per block: kBlock vectors whose accumulators stay in registers while the P
// neighbours are added one after the other.
constexpr int kBlock = 4;
static_assert(kBlock * kLanes <= medimg::kLbpSlack, "the last block reads past the rows");

// One neighbour over one block of kBlock vectors starting at column c:
// kVar false: code += (t - I >= 0) ? bit : 0;  kVar true: sum += t, sq += t * t.
template <int kKind, bool kVar>
__attribute__((always_inline)) static inline void add_tap(const Tap& t, ptrdiff_t c,
                                                          const vd* center, double bit, vd* acc0,
                                                          vd* acc1) {
  const double* p0 = t.p0 + c;
  const double* p1 = t.p1 + c;
  const double v0 = t.v0, v1 = t.v1;
  const vd vbit = set1dn(bit), zero = set1dn(0.0);
  for (int k = 0; k < kBlock; ++k) {
    vd v;
    if constexpr (kKind == kOne)
      v = load_dn(p0 + k * kLanes);
    else
      v = v0 * load_dn(p0 + k * kLanes) + v1 * load_dn(p1 + k * kLanes);
    if constexpr (kVar) {
      acc0[k] += v;
      acc1[k] += v * v;
    } else {
      acc0[k] += v - center[k] >= 0.0 ? vbit : zero;
    }
  }
}

// One output row from the prepared taps.
// Counts the integers k (< 2^32) of the first n lanes whose mask byte is non-zero (all
// if m is nullptr); even / odd lanes into two copies of the histogram, `half` words apart.
static inline void count_codes(vu k, ptrdiff_t n, const uint8_t* m, uint32_t* hist,
                               ptrdiff_t half) {
  uint64_t u[kLanes];
  __builtin_memcpy(u, &k, sizeof k);
  if (m == nullptr) {
    ptrdiff_t l = 0;
    for (; l + 1 < n; l += 2) {
      ++hist[u[l]];
      ++hist[u[l + 1] + static_cast<uint64_t>(half)];
    }
    if (l < n) ++hist[u[l]];
    return;
  }
  for (ptrdiff_t l = 0; l < n; ++l)
    if (m[l] != 0) ++hist[u[l] + static_cast<uint64_t>((l & 1) * half)];
}

// Code counts for at most kPackedBins codes in vector lanes: every uint64 lane holds
// kPackedBins 6-bit counters, code k adding 1 << 6k, flushed into hist before a counter can
// reach 64 (no scatter of increments).
constexpr int kPackedBins = 10;
constexpr int kPackedFlush = 63;
struct Packed {
  vu acc;
  int pending;
};
static inline void packed_flush(Packed& p, uint32_t* hist, int nbins) {
  uint64_t u[kLanes];
  __builtin_memcpy(u, &p.acc, sizeof p.acc);
  for (int l = 0; l < kLanes; ++l)
    for (int k = 0; k < nbins; ++k) hist[k] += static_cast<uint32_t>((u[l] >> (6 * k)) & 63u);
  p.acc = set1un(0);
  p.pending = 0;
}
// Lanes l < n whose mask byte is non-zero (all l < n without a mask) as all-ones.
static inline vu lane_select(const uint8_t* m, ptrdiff_t n) {
  uint64_t u[kLanes];
  for (int l = 0; l < kLanes; ++l) u[l] = (l < n && (m == nullptr || m[l] != 0)) ? ~0ull : 0ull;
  vu v;
  __builtin_memcpy(&v, u, sizeof v);
  return v;
}

template <int kMethod>
static void lbp_row(const Tap* taps, int P, const double* crow, ptrdiff_t cols, const double* lut,
                    double* o, uint32_t* hist, const uint8_t* mrow, int nbins, Packed* packed) {
  constexpr bool kVar = kMethod == medimg::kLbpVar;
  for (ptrdiff_t c = 0; c < cols; c += kBlock * kLanes) {
    vd center[kBlock], acc0[kBlock], acc1[kBlock];
    for (int k = 0; k < kBlock; ++k) {
      center[k] = load_dn(crow + c + k * kLanes);
      acc0[k] = acc1[k] = set1dn(0.0);
    }
    for (int i = 0; i < P; ++i) {
      const double bit = static_cast<double>(uint64_t(1) << i);
      if (taps[i].kind == kOne)
        add_tap<kOne, kVar>(taps[i], c, center, bit, acc0, acc1);
      else
        add_tap<kTwo, kVar>(taps[i], c, center, bit, acc0, acc1);
    }
    for (int k = 0; k < kBlock; ++k) {
      const ptrdiff_t x = c + k * kLanes;
      if (x >= cols) break;
      vd v;
      if constexpr (kVar) {
        // skimage: var_ = (var_ - (sum_ * sum_) / P) / P, NaN where it is 0.  When P is
        // a power of two, x / P and x * (1 / P) are the same correctly rounded number.
        const double p = static_cast<double>(P);
        vd var;
        if ((P & (P - 1)) == 0)
          var = (acc1[k] - (acc0[k] * acc0[k]) * (1.0 / p)) * (1.0 / p);
        else
          var = (acc1[k] - (acc0[k] * acc0[k]) / p) / p;
        v = var != 0.0 ? var : set1dn(__builtin_nan(""));
      }
      const ptrdiff_t nl = x + kLanes <= cols ? kLanes : cols - x;
      if constexpr (!kVar) {
        const vu bits = to_u(acc0[k]);
        if (packed != nullptr) {
          const vd code = lut != nullptr ? gather_d(lut, bits) : finish<kMethod>(bits, P);
          const vu inc = set1un(1) << (to_u(code) * 6u);
          const vu on = (mrow == nullptr && nl == kLanes)
                            ? set1un(~0ull)
                            : lane_select(mrow != nullptr ? mrow + x : nullptr, nl);
          packed->acc += inc & on;
          if (++packed->pending == kPackedFlush) packed_flush(*packed, hist, nbins);
          if (o == nullptr) continue;
        } else if (hist != nullptr) {
          // With a table: the bit patterns are counted (2^P bins) and mapped to codes at
          // the end (lbp_image); else the codes.
          const ptrdiff_t half = lut != nullptr ? ptrdiff_t(1) << P : nbins;
          count_codes(lut != nullptr ? bits : to_u(finish<kMethod>(bits, P)), nl,
                      mrow != nullptr ? mrow + x : nullptr, hist, half);
          if (o == nullptr) continue;
        }
        v = lut != nullptr ? gather_d(lut, bits) : finish<kMethod>(bits, P);
      }
      if (o == nullptr) continue;
      if (nl == kLanes)
        store_dn(o + x, v);
      else
        store_dn_n(o + x, v, nl);
    }
  }
}

// Image row y as float64 at dst + pad, zeros on both sides; false if a value is NaN,
// infinite or beyond +-max_abs.
template <typename T>
static bool load_row(const T* src, ptrdiff_t cols, ptrdiff_t pad, ptrdiff_t stride, double max_abs,
                     double* dst) {
  for (ptrdiff_t x = 0; x < pad; ++x) dst[x] = 0.0;
  double* d = dst + pad;
  bool ok = true;
  for (ptrdiff_t x = 0; x < cols; ++x) {
    const double v = static_cast<double>(src[x]);
    d[x] = v;
    if constexpr (sizeof(T) >= 4) ok = ok & (v >= -max_abs) & (v <= max_abs);
  }
  for (ptrdiff_t x = pad + cols; x < stride; ++x) dst[x] = 0.0;
  return ok;
}

static inline ptrdiff_t clamp_offset(double o, ptrdiff_t pad) {
  const double p = static_cast<double>(pad);
  return static_cast<ptrdiff_t>(o < -p ? -p : (o > p ? p : o));
}

template <int kMethod>
static bool lbp_image(const medimg::LbpArgs& a, Tap* taps, Group* groups, int ngroups,
                      RowCache& img, const double* zero0, const double* zero_h, double* lut) {
  // Small P: the value of every code from a table (built with finish() itself).
  constexpr bool kTable = kMethod == medimg::kLbpRor || kMethod == medimg::kLbpUniform ||
                          kMethod == medimg::kLbpNriUniform;
  if (!kTable || a.P > medimg::kLbpTableMaxP) {
    lut = nullptr;
  } else {
    const uint64_t n = uint64_t(1) << a.P;
    for (uint64_t u = 0; u < n; u += kLanes) {
      vu codes;
#if MEDIMG_LANES == 1
      codes = u;
#else
      for (int l = 0; l < kLanes; ++l) codes[l] = u + uint64_t(l) < n ? u + uint64_t(l) : 0;
#endif
      const vd v = finish<kMethod>(codes, a.P);
      if (u + kLanes <= n)
        store_dn(lut + u, v);
      else
        store_dn_n(lut + u, v, ptrdiff_t(n - u));
    }
  }
  const ptrdiff_t rows = a.rows, cols = a.cols, pad = a.pad, stride = a.stride;
  const ptrdiff_t hlen = a.hlen;
  auto load = [&](ptrdiff_t y, double* dst) -> bool {
    const ptrdiff_t off = y * cols;
    switch (a.dtype) {
      case medimg::kLbpU8:
        return load_row(static_cast<const uint8_t*>(a.image) + off, cols, pad, stride, a.max_abs,
                        dst);
      case medimg::kLbpU16:
        return load_row(static_cast<const uint16_t*>(a.image) + off, cols, pad, stride, a.max_abs,
                        dst);
      case medimg::kLbpF32:
        return load_row(static_cast<const float*>(a.image) + off, cols, pad, stride, a.max_abs,
                        dst);
      default:
        return load_row(static_cast<const double*>(a.image) + off, cols, pad, stride, a.max_abs,
                        dst);
    }
  };
  // Histogram output: with a table, bit patterns are counted into pattern_counts (2 x 2^P
  // words of scratch after the table) and mapped to codes at the end.
  uint32_t* counts = a.hist;
  Packed packed_state{set1un(0), 0};
  Packed* packed = a.hist != nullptr && a.nbins <= kPackedBins ? &packed_state : nullptr;
  if (packed != nullptr) {
    for (int k = 0; k < 2 * a.nbins; ++k) a.hist[k] = 0;
  } else if (a.hist != nullptr && lut != nullptr) {
    counts = reinterpret_cast<uint32_t*>(lut + (ptrdiff_t(1) << medimg::kLbpTableMaxP));
    for (ptrdiff_t u = 0; u < (ptrdiff_t(2) << a.P); ++u) counts[u] = 0;
  }
  for (ptrdiff_t r = 0; r < rows; ++r) {
    if (!img.update(r, rows, load)) return false;
    for (int g = 0; g < ngroups; ++g) {
      const Group& gr = groups[g];
      // H(y) = (1 - dx) I[y, x0] + dx I[y, x1] over hlen columns.
      auto interpolate = [&](ptrdiff_t y, double* dst) -> bool {
        const double* src = img.find(y) + pad;
        const double *s0 = src + gr.o0, *s1 = src + gr.o1;
        for (ptrdiff_t c = 0; c < hlen; c += kLanes)
          store_dn(dst + c,
                   load_dn(gr.w0 + c) * load_dn(s0 + c) + load_dn(gr.w1 + c) * load_dn(s1 + c));
        return true;
      };
      groups[g].cache.update(r, rows, interpolate);
    }
    for (int i = 0; i < a.P; ++i) {
      Tap& t = taps[i];
      const double y = static_cast<double>(r) + t.rp;
      const double dy = y - __builtin_floor(y);
      const ptrdiff_t y0 = r + t.fy, y1 = r + t.cy;
      if (t.group < 0) {
        const double* q0 = img.find(y0);
        const double* q1 = img.find(y1);
        t.p0 = (q0 != nullptr ? q0 + pad : zero0) + t.o0;
        t.p1 = (q1 != nullptr ? q1 + pad : zero0) + t.o0;
      } else {
        const double* q0 = groups[t.group].cache.find(y0);
        const double* q1 = groups[t.group].cache.find(y1);
        t.p0 = q0 != nullptr ? q0 : zero_h;
        t.p1 = q1 != nullptr ? q1 : zero_h;
      }
      t.v0 = 1.0 - dy;
      t.v1 = dy;
    }
    lbp_row<kMethod>(taps, a.P, img.find(r) + pad, cols, lut,
                     a.out != nullptr ? a.out + r * cols : nullptr, counts,
                     a.mask != nullptr ? a.mask + r * cols : nullptr, a.nbins, packed);
  }
  if (packed != nullptr) {
    packed_flush(*packed, a.hist, a.nbins);
  } else if (counts != nullptr && lut != nullptr) {
    // Pattern counts (two copies) -> code counts (two copies, the second left zero).
    const ptrdiff_t np = ptrdiff_t(1) << a.P;
    for (int k = 0; k < 2 * a.nbins; ++k) a.hist[k] = 0;
    for (ptrdiff_t u = 0; u < np; ++u)
      a.hist[static_cast<ptrdiff_t>(lut[u])] += counts[u] + counts[np + u];
  }
  return true;
}

}  // namespace lbp

// See medimg::LbpArgs (csrc/kernels.hpp).
static bool lbp_kernel(const medimg::LbpArgs& a) {
  using namespace lbp;
  const ptrdiff_t pad = a.pad, stride = a.stride, hlen = a.hlen;
  const int P = a.P;
  // Scratch (medimg::lbp_scratch): image slots, zero image row, H slots, zero H row,
  // weight tables.
  // Every row and table starts on a 64-byte boundary (pad, hlen and stride are multiples
  // of 8 doubles): aligned loads wherever the column offset is 0.
  double* next = a.scratch + ((64 - reinterpret_cast<uintptr_t>(a.scratch) % 64) % 64) / 8;
  double* img_slots = next;
  next += (2 * P + 1) * stride;
  double* zero_img = next;
  next += stride;
  double* h_slots = next;
  next += (medimg::kLbpGroupSlots + 2) * P * hlen;
  double* zero_h = next;
  next += hlen;
  double* lut = next;
  next += 1 << medimg::kLbpTableMaxP;
  next += 1 << medimg::kLbpTableMaxP;  // pattern counts (2 x 2^P uint32) of lbp_histogram
  for (ptrdiff_t x = 0; x < stride; ++x) zero_img[x] = 0.0;
  for (ptrdiff_t x = 0; x < hlen; ++x) zero_h[x] = 0.0;
  const double* zero0 = zero_img + pad;  // column 0 of the zero image row

  Tap taps[medimg::kLbpMaxP];
  Group groups[medimg::kLbpMaxP];
  int ngroups = 0;
  RowCache img;
  img.nrel = 0;
  img.add_rel(0);
  for (int i = 0; i < P; ++i) {
    Tap& t = taps[i];
    const double rp = a.rp[i], cp = a.cp[i];
    const bool row_int = rp == __builtin_floor(rp), col_int = cp == __builtin_floor(cp);
    t.kind = row_int ? kOne : kTwo;
    t.rp = rp;
    t.fy = static_cast<ptrdiff_t>(__builtin_floor(rp));
    t.cy = static_cast<ptrdiff_t>(__builtin_ceil(rp));
    t.o0 = clamp_offset(__builtin_floor(cp), pad);
    t.group = -1;
    t.p0 = t.p1 = zero_h;
    t.v0 = 1.0;
    t.v1 = 0.0;
    img.add_rel(t.fy);
    img.add_rel(t.cy);
    if (col_int) continue;
    for (int g = 0; g < ngroups && t.group < 0; ++g)
      if (groups[g].cp == cp) t.group = g;
    if (t.group < 0) {
      Group& g = groups[ngroups];
      t.group = ngroups++;
      g.cp = cp;
      g.o0 = t.o0;
      g.o1 = clamp_offset(__builtin_ceil(cp), pad);
      g.w0 = next;
      g.w1 = next + hlen;
      next += 2 * hlen;
      for (ptrdiff_t c = 0; c < hlen; ++c) {
        const double x = static_cast<double>(c) + cp;
        const double dx = x - __builtin_floor(x);
        g.w0[c] = 1.0 - dx;
        g.w1[c] = dx;
      }
      g.cache.nrel = 0;
    }
    groups[t.group].cache.add_rel(t.fy);
    groups[t.group].cache.add_rel(t.cy);
  }
  // Slots: the whole span of rows when it is small, else one per relative row.
  const ptrdiff_t img_span = img.span();
  img.nslots = static_cast<int>(img_span < 2 * P + 1 ? img_span : 2 * P + 1);
  for (int s = 0; s < img.nslots; ++s) {
    img.row[s] = kNoRow;
    img.data[s] = img_slots + s * stride;
  }
  for (int g = 0; g < ngroups; ++g) {
    RowCache& c = groups[g].cache;
    const ptrdiff_t span = c.span();
    const int most = c.nrel > medimg::kLbpGroupSlots ? c.nrel : medimg::kLbpGroupSlots;
    c.nslots = static_cast<int>(span < most ? span : most);
    for (int s = 0; s < c.nslots; ++s) {
      c.row[s] = kNoRow;
      c.data[s] = h_slots;
      h_slots += hlen;
    }
  }

  switch (a.method) {
    case medimg::kLbpDefault:
      return lbp_image<medimg::kLbpDefault>(a, taps, groups, ngroups, img, zero0, zero_h, lut);
    case medimg::kLbpRor:
      return lbp_image<medimg::kLbpRor>(a, taps, groups, ngroups, img, zero0, zero_h, lut);
    case medimg::kLbpUniform:
      return lbp_image<medimg::kLbpUniform>(a, taps, groups, ngroups, img, zero0, zero_h, lut);
    case medimg::kLbpNriUniform:
      return lbp_image<medimg::kLbpNriUniform>(a, taps, groups, ngroups, img, zero0, zero_h, lut);
    default:
      return lbp_image<medimg::kLbpVar>(a, taps, groups, ngroups, img, zero0, zero_h, lut);
  }
}

}  // namespace
