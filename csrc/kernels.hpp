// Kernel interface shared by the dispatcher, the bindings and the C++ tests.
//
// Every SIMD target compiles csrc/kernels/target.cpp once and exports one KernelTable.
// Kernels take contiguous float32 images and caller-allocated scratch memory: nothing
// inside a target translation unit allocates, so no std:: code is compiled with
// target-specific flags (see csrc/README.md, "ODR hazard").
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace medimg {

// Output types of quantize_affine (quant.hpp) and its largest number of channels.
enum QuantOut : int { kQuantInt8 = 0, kQuantUint8 = 1, kQuantFloat32 = 2 };
constexpr int kQuantMaxChannels = 4;

// Largest filter window the local-statistics kernels accept (odd, >= 3).
constexpr int kMaxWindow = 31;

// Row stride (in floats) of the padded scratch images used by the neighbourhood kernels:
// room for a `radius` border on both sides plus slack so that full-width vector loads
// past the last column stay inside the buffer (16 lanes = AVX-512).
static inline ptrdiff_t padded_stride(ptrdiff_t cols, int radius) {
  return ((cols + 2 * radius + 32 + 15) / 16) * 16;
}

// Scratch floats needed by each kernel for an image of `rows` x `cols`.
static inline size_t srad_scratch(ptrdiff_t rows, ptrdiff_t cols) {
  return static_cast<size_t>(3 * (rows + 2) * padded_stride(cols, 1));
}
static inline size_t local_scratch(ptrdiff_t rows, ptrdiff_t cols, int window) {
  const int r = window / 2;
  // The padded image, two float column-sum rows and two double ones (4 float rows).
  return static_cast<size_t>((rows + 2 * r + 6) * padded_stride(cols, r));
}

// Lookup table for the exact unbiased inverse of the generalised Anscombe transform,
// sampled uniformly in the transformed domain (normalised units: gain 1).
struct InverseAnscombeTable {
  const float* values;  // y(D) at D = d0 + i * step, i = 0 .. size-1
  ptrdiff_t size;
  float d0;
  float inv_step;
  float sigma2;  // (sigma / gain)^2, used by the closed-form tail beyond the table
  float gain;
};

// ---- features: GLCM (glcm.hpp) ---------------------------------------------------------
// Grey-level co-occurrence matrices (the counts of skimage.feature.graycomatrix) and their
// properties.  The K = n_dist * n_angle matrices (L x L, L = levels) are stored one after
// another, matrix k at out + k * glcm_matrix_stride(L): the padding keeps the K counters
// one pixel increments from being a multiple of 4 KiB apart (see glcm.hpp).
constexpr ptrdiff_t kGlcmMaxLevels = 65536;
enum GlcmDtype : int { kGlcmU8 = 0, kGlcmU16 = 1 };
struct GlcmArgs {
  const void* image;  // rows x cols, C-contiguous, element type `dtype`
  int dtype;          // GlcmDtype
  ptrdiff_t rows, cols;
  ptrdiff_t levels;     // L, 1 .. kGlcmMaxLevels
  ptrdiff_t n_offsets;  // K >= 1
  const ptrdiff_t* dr;  // K row offsets, |dr| <= rows (skimage's rounded d sin(angle))
  const ptrdiff_t* dc;  // K column offsets, |dc| <= cols (rounded d cos(angle))
  int symmetric;        // non-zero: every matrix becomes P + P^T
  uint32_t* out;        // glcm_out_words(L, K) words (zeroed by the kernel)
};
static inline ptrdiff_t glcm_matrix_stride(ptrdiff_t L) { return L * L + 48; }
// Four partial copies of the counts (column c counts into copy c % 4 of its run) when one
// copy is at most 64 KiB; they live in the same buffer, glcm_copy_shift(L, K) words apart.
static inline int glcm_copies(ptrdiff_t L, ptrdiff_t K) { return L * L * K <= 16384 ? 4 : 1; }
static inline ptrdiff_t glcm_copy_shift(ptrdiff_t L, ptrdiff_t K) {
  return K * glcm_matrix_stride(L) + 16;
}
static inline size_t glcm_out_words(ptrdiff_t L, ptrdiff_t K) {
  const ptrdiff_t one = K * glcm_matrix_stride(L);
  return static_cast<size_t>((glcm_copies(L, K) - 1) * glcm_copy_shift(L, K) + one);
}
static inline size_t glcm_props_scratch(ptrdiff_t L) { return static_cast<size_t>(7 * L + 64); }
// What glcm_props computes beyond the marginals (ASM, energy, correlation, mean, variance,
// std, autocorrelation, maximum_probability): the |i - j| histogram (contrast,
// dissimilarity, homogeneity, difference_*, id, idmn, idn, inverse_variance), the i + j
// histogram (cluster_*, sum_*), sum p ln p (entropy, joint_entropy, imc1, imc2).
enum GlcmNeed : int { kGlcmNeedDif = 1, kGlcmNeedSum = 2, kGlcmNeedLog = 4, kGlcmNeedAll = 7 };
// Outputs of glcm_props, in this order (out[p * K + k]).  Definitions:
// src/medimg_edge/features/_glcm.py.
enum GlcmProp : int {
  kGlcmContrast,
  kGlcmDissimilarity,
  kGlcmHomogeneity,
  kGlcmASM,
  kGlcmEnergy,
  kGlcmCorrelation,
  kGlcmMean,
  kGlcmVariance,
  kGlcmStd,
  kGlcmEntropy,
  kGlcmAutocorrelation,
  kGlcmClusterProminence,
  kGlcmClusterShade,
  kGlcmClusterTendency,
  kGlcmDifferenceAverage,
  kGlcmDifferenceEntropy,
  kGlcmDifferenceVariance,
  kGlcmId,
  kGlcmIdmn,
  kGlcmIdn,
  kGlcmImc1,
  kGlcmImc2,
  kGlcmInverseVariance,
  kGlcmJointEntropy,
  kGlcmMaximumProbability,
  kGlcmSumAverage,
  kGlcmSumEntropy,
  kGlcmProps  // number of properties
};
constexpr const char* kGlcmPropNames[kGlcmProps] = {"contrast",
                                                    "dissimilarity",
                                                    "homogeneity",
                                                    "ASM",
                                                    "energy",
                                                    "correlation",
                                                    "mean",
                                                    "variance",
                                                    "std",
                                                    "entropy",
                                                    "autocorrelation",
                                                    "cluster_prominence",
                                                    "cluster_shade",
                                                    "cluster_tendency",
                                                    "difference_average",
                                                    "difference_entropy",
                                                    "difference_variance",
                                                    "id",
                                                    "idmn",
                                                    "idn",
                                                    "imc1",
                                                    "imc2",
                                                    "inverse_variance",
                                                    "joint_entropy",
                                                    "maximum_probability",
                                                    "sum_average",
                                                    "sum_entropy"};

// ---- features: LBP (lbp.hpp) ----------------------------------------------------------
// Local binary patterns, bit-identical to skimage.feature.local_binary_pattern.
constexpr int kLbpMaxP = 32;       // codes are skimage's int32 words (see features/_lbp.py)
constexpr int kLbpSlack = 32;      // columns read past the last pixel of a row
constexpr int kLbpGroupSlots = 8;  // rows cached per column offset (at least)
constexpr int kLbpTableMaxP = 10;  // ror/uniform/nri_uniform through a 2^P table up to here
enum LbpDtype : int { kLbpU8 = 0, kLbpU16 = 1, kLbpF32 = 2, kLbpF64 = 3 };
enum LbpMethod : int { kLbpDefault, kLbpRor, kLbpUniform, kLbpNriUniform, kLbpVar };
struct LbpArgs {
  const void* image;  // rows x cols, C-contiguous, element type `dtype`
  int dtype;          // LbpDtype
  ptrdiff_t rows, cols;
  int P;                        // 1 .. kLbpMaxP neighbours
  int method;                   // LbpMethod
  const double* rp;             // P row offsets (skimage's -R sin(2 pi i / P) rounded to 1e-5)
  const double* cp;             // P column offsets; |rp|, |cp| <= 2^17
  double max_abs;               // a larger |value| (or NaN, Inf) makes the kernel return false
  ptrdiff_t pad, hlen, stride;  // lbp_pad(), lbp_hlen(), lbp_stride()
  double* scratch;              // lbp_scratch() doubles
  double* out;                  // rows x cols, or nullptr (codes not stored; with hist)
  // Optional histogram of the codes (integer codes in [0, nbins): not with kLbpVar): the
  // codes of the pixels where mask != 0 (every pixel if mask is nullptr) are counted into
  // hist[0 .. 2 nbins) (two interleaved copies; the caller adds hist[nbins + k] to hist[k]).
  uint32_t* hist = nullptr;
  const uint8_t* mask = nullptr;
  int nbins = 0;
};
// Zero columns on each side of a converted image row: the widest column offset, at most
// cols + 1 (a sample further out is outside the image for every pixel and reads a zero),
// rounded up to a multiple of 8 so that rows start on 64-byte boundaries.
static inline ptrdiff_t lbp_pad(const double* cp, int P, ptrdiff_t cols) {
  double widest = 0.0;
  for (int i = 0; i < P; ++i) widest = cp[i] > widest ? cp[i] : (-cp[i] > widest ? -cp[i] : widest);
  ptrdiff_t w = static_cast<ptrdiff_t>(widest);
  if (static_cast<double>(w) < widest) ++w;  // ceil
  w = w > cols + 1 ? cols + 1 : w;
  return (w + 7) / 8 * 8;
}
// Length of an interpolated row and of a column-weight table.
static inline ptrdiff_t lbp_hlen(ptrdiff_t cols) { return (cols + 7) / 8 * 8 + kLbpSlack; }
// Length of a converted image row.
static inline ptrdiff_t lbp_stride(ptrdiff_t cols, ptrdiff_t pad) {
  return lbp_hlen(cols) + 2 * pad;
}
static inline size_t lbp_scratch(ptrdiff_t cols, int P, ptrdiff_t pad) {
  // 2P + 1 image rows and a zero row; (kLbpGroupSlots + 2) P interpolated rows, a zero
  // row and two weight tables per column offset; the code table; 8 to align to 64 bytes.
  return static_cast<size_t>((2 * P + 2) * lbp_stride(cols, pad) +
                             ((kLbpGroupSlots + 4) * P + 1) * lbp_hlen(cols) +
                             (1 << kLbpTableMaxP) + (1 << kLbpTableMaxP) + 8);
}

// ---- features: first-order statistics, gradients, quality (stats.hpp) -----------------
// Summaries of the values selected by an optional mask (see csrc/kernels/stats.hpp for the
// exact definitions; they match numpy.histogram / numpy.percentile / numpy.median).
constexpr int kStatsMaxQuantiles = 16;
constexpr int kStatsMaxBins = 4096;   // entropy histogram bins
constexpr int kGradientMaxBins = 64;  // orientation histogram bins
constexpr int kSharpnessBox = 9;      // re-blur box of the blur-effect measure
struct SummaryRequest {
  const uint8_t* mask;  // nullptr: all n values; else the values where mask[i] != 0
  int bins;             // 0..kStatsMaxBins: numpy.histogram(v, bins, range=(min, max)) -> hist
  uint32_t* hist;
  int nq;           // 0..kStatsMaxQuantiles: numpy.percentile(v, 100 * q[i]) -> qout[i]
  const double* q;  // fractions in [0, 1]
  double* qout;
  int mad;             // non-zero: median(|v - median(v)|) -> Summary::mad
  double rmad_lo;      // if 0 <= rmad_lo <= rmad_hi <= 1: mean |v - m| over the v in
  double rmad_hi;      // [Q(rmad_lo), Q(rmad_hi)], m their mean -> Summary::rmad
  float below, above;  // count values <= below, >= above
};
struct Summary {
  double count, min, max, mean, sumsq;
  double m2, m3, m4, absdev;  // central moments mean((v - mean)^k), mean |v - mean|
  double mad, rmad;
  double n_below, n_above;
  int counting;  // 1: integral values spanning < 65536 (counting path); 0: radix path
};
// Sums over the image of the sharpness measures (reflect-101 border): 4-neighbour
// Laplacian L, Sobel gx, gy, and the blur effect of Crete-Roffet et al. (2007): D the
// absolute difference of horizontally (h) / vertically (v) adjacent pixels, lost = max(0,
// D - D') with D' the same difference after a kSharpnessBox box blur along that axis.
struct Sharpness {
  double lap_sum, lap_sumsq, tenengrad_sum;
  double diff_h, lost_h, diff_v, lost_v;
};
// uint32 words of summary() scratch for n values.
static inline size_t summary_scratch(ptrdiff_t n) { return static_cast<size_t>(65536 + 20480 + n); }
static inline size_t gradient_scratch(ptrdiff_t rows, ptrdiff_t cols) {
  return static_cast<size_t>((rows + 2) * padded_stride(cols, 1));
}
// gradient_u8 (Sobel of a uint8 image, fused moments and quantiles; see stats.hpp).
constexpr int kGradientU8Keys = 2752;  // m2 buckets (m2 < 2^21), the last one: unselected
constexpr int kGradientU8Span = 8208;  // most m2 values of one bucket
static inline ptrdiff_t gradient_u8_stride(ptrdiff_t cols) {
  return (cols + 2 + 64 + 63) / 64 * 64;
}
// uint32 words of gradient_u8 scratch.
static inline size_t gradient_u8_scratch(ptrdiff_t rows, ptrdiff_t cols) {
  return static_cast<size_t>(((rows + 2) * gradient_u8_stride(cols) + 3) / 4 + rows * cols + cols +
                             64 + 2 * kGradientU8Keys + kGradientU8Span);
}
static inline size_t sharpness_scratch(ptrdiff_t rows, ptrdiff_t cols) {
  return static_cast<size_t>((rows + 2 * (kSharpnessBox / 2)) *
                             padded_stride(cols, kSharpnessBox / 2));
}

// ---- features: extract() of a uint8 image in one call (extract.hpp) -------------------
// Every value of medimg_edge.features.extract (no mask) of a uint8 image, in its key order:
// 18 first-order, 27 GLCM properties per distance (averaged over the angles), P + 2 uniform
// LBP fractions, 3 + gradient_bins gradient values.  With `unit` set, the image is first
// made from a float32 image in [0, 1] (round(255 x), half to even, saturated: the
// appearance descriptor's conversion) and every value v is returned as sign(v)
// log1p(10 |v|), non-finite values as 0 (medimg_edge._appearance).
constexpr int kExtractFirstorder = 18;
constexpr int kExtractMaxDistances = 64;
constexpr int kExtractMaxAngles = 16;
struct ExtractU8Args {
  const uint8_t* image;  // rows x cols, C-contiguous (ignored when unit is set)
  const float* unit;     // or: rows x cols float32 in [0, 1], converted into scratch
  ptrdiff_t rows, cols;
  int firstorder_bins;  // 1 .. kStatsMaxBins
  int levels;           // GLCM grey levels, 2 .. 256
  int n_dist, n_angle;  // <= kExtractMaxDistances, kExtractMaxAngles; K = n_dist * n_angle
                        // offsets, distance-major
  const ptrdiff_t* dr;  // K row offsets, |dr| <= rows (features._glcm._offsets)
  const ptrdiff_t* dc;  // K column offsets, |dc| <= cols
  int lbp_P;            // 1 .. kLbpMaxP (uniform codes)
  const double* rp;     // P LBP row / column offsets (features._lbp._offsets)
  const double* cp;
  int gradient_bins;  // 1 .. kGradientMaxBins
  int appearance;     // non-zero: the sign(v) log1p(10 |v|) transform
};
static inline ptrdiff_t extract_u8_values(int n_dist, int lbp_P, int gradient_bins) {
  return kExtractFirstorder + static_cast<ptrdiff_t>(kGlcmProps) * n_dist + (lbp_P + 2) + 3 +
         gradient_bins;
}
static inline size_t extract_align(size_t b) { return (b + 63) / 64 * 64; }
// Bytes of extract_u8 scratch (64-byte aligned parts; the buffer itself 64-byte aligned).
static inline size_t extract_u8_scratch(ptrdiff_t rows, ptrdiff_t cols, int firstorder_bins,
                                        int levels, int K, int lbp_P, const double* cp) {
  const ptrdiff_t n = rows * cols;
  const ptrdiff_t pad = lbp_pad(cp, lbp_P, cols);
  return extract_align(static_cast<size_t>(n)) +  // uint8 image (unit)
         extract_align(2 * static_cast<size_t>(firstorder_bins) * sizeof(double)) +
         extract_align(static_cast<size_t>(n)) +                        // quantised image
         extract_align(4 * 257 * sizeof(uint32_t)) +                    // summary_u8
         extract_align(glcm_out_words(levels, K) * sizeof(uint32_t)) +  // GLCM counts
         extract_align(glcm_props_scratch(levels) * sizeof(double)) +
         extract_align(static_cast<size_t>(kGlcmProps) * K * sizeof(double)) +
         extract_align(lbp_scratch(cols, lbp_P, pad) * sizeof(double)) +
         extract_align(2 * static_cast<size_t>(lbp_P + 2) * sizeof(uint32_t)) +
         extract_align(gradient_u8_scratch(rows, cols) * sizeof(uint32_t)) + 64;
}

// ---- denoise: parameter estimation (estimate.hpp) --------------------------------------
// speckle_cv scratch: float32 sum rows and the subsampled means / coefficients of variation
// (fscratch), the radix-selection keys and histograms (uscratch, as summary_scratch).
static inline ptrdiff_t speckle_cv_samples(ptrdiff_t rows, ptrdiff_t cols) {
  return ((rows + 1) / 2) * ((cols + 1) / 2);
}
static inline size_t speckle_cv_fscratch(ptrdiff_t rows, ptrdiff_t cols, int window) {
  const ptrdiff_t stride = padded_stride(cols, window / 2);
  return static_cast<size_t>(2 * stride + 4 * (stride / 2 + 16) +
                             2 * speckle_cv_samples(rows, cols));
}
static inline size_t speckle_cv_uscratch(ptrdiff_t rows, ptrdiff_t cols) {
  return summary_scratch(speckle_cv_samples(rows, cols));
}
// noise_tiles: (rows - 2) / block x (cols - 2) / block tiles (both >= 1); acc doubles.
static inline size_t noise_tiles_scratch(ptrdiff_t cols, int block) {
  return static_cast<size_t>(2 * ((cols - 2) / block) * block);
}

// ---- quality gate (quality.hpp) --------------------------------------------------------
// The region and edge passes of medimg_edge.quality.assess on the analysis image (see
// csrc/kernels/quality.hpp and the docstring of assess for the rules).
constexpr int kQualityHistBins = 1024;  // quantile histogram on [0, 1 + 1e-6)
constexpr int kQualityEdgeBins = 256;   // |g_b| histogram of the edge points
constexpr int kQualityMaxRadius = 15;   // largest Gaussian radius (taps 2 r + 1)
struct QualityRegionArgs {
  const float* a;  // rows x cols analysis image u
  ptrdiff_t rows, cols;
  uint8_t* fov;     // rows x cols, 0 / 255: read if fov_given, else written (border bands)
  int fov_given;    // non-zero: fov is the caller's (ultrasound imaged region)
  double band_tol;  // border bands: largest std / step of a uniform line
  float stroke_tophat, stroke_level;  // strokes: u - opening_5x5(u) > tophat and u > level
  int inner_margin;                   // the FOV eroded by a (2 m + 1)^2 window (zero border)
  int stroke_margin;                  // edge points keep this many px from strokes
  float sat_lo, sat_hi;               // underexposed: u <= sat_lo; saturated: u >= sat_hi
  int nq;                             // 0 .. kStatsMaxQuantiles quantiles q[] of u
  const double* q;
  uint8_t* allowed;  // rows x cols out, 0 / 255: where edge points may lie
};
struct QualityRegion {
  double band[4];  // top, bottom, left, right of the band rectangle [t, b) x [l, r)
  double n_fov, n_strokes, n_stat, n_inner;
  double noise_sigma, mean, std;  // Immerkaer sigma; mean, std of u over the stat mask
  double quantiles[kStatsMaxQuantiles];
  double n_sat, n_under;
};
struct QualityEdgeArgs {
  const float* a;  // rows x cols analysis image u
  ptrdiff_t rows, cols;
  const uint8_t* allowed;  // non-zero: an edge point may lie here
  const float* taps_a;     // blur A: taps_a[0] (centre) .. taps_a[radius_a]
  int radius_a;            // 0 .. kQualityMaxRadius
  const float* taps_b;     // blur B, applied to the result of blur A
  int radius_b;
  float threshold;      // edge points: |g_b| > threshold
  double top_fraction;  // the strongest fraction of them is used
  int min_edges;        // fewer edge points: not measured (n_used = 0)
};
struct QualityEdges {
  double n_all, n_used, mean_a2, mean_b2;  // edge points; used ones; mean |g_a|^2, |g_b|^2
};
// Floats of scratch for quality_region and quality_edges (either).
static inline size_t quality_scratch(ptrdiff_t rows, ptrdiff_t cols) {
  return static_cast<size_t>(8 * rows * cols + 16 * (rows + cols) + 8192);
}
// Doubles of scratch for quality_bands.
static inline size_t quality_bands_scratch(ptrdiff_t rows, ptrdiff_t cols) {
  return static_cast<size_t>(6 * (rows > cols ? rows : cols) + 64);
}

struct KernelTable {
  const char* name;
  // Speckle Reducing Anisotropic Diffusion (Yu & Acton 2002). scratch: srad_scratch().
  void (*srad)(const float* in, float* out, ptrdiff_t rows, ptrdiff_t cols, int iterations,
               float time_step, float q0, float rho, float* scratch);
  // out = m + W (x - m), W = clamp((v - a m^2 - b) / (g v), 0, 1) over a window x window
  // neighbourhood (m: local mean, v: local variance); Lee: a = Cu^2, b = 0, g = 1;
  // Kuan: a = Cu^2, b = 0, g = 1 + Cu^2; additive Lee (local Wiener): a = 0, b = noise
  // variance, g = 1.  Reflect-101 border.  scratch: local_scratch().
  void (*local_stats)(const float* in, float* out, ptrdiff_t rows, ptrdiff_t cols, int window,
                      float a, float b, float g, float* scratch);
  // Frost filter: weights exp(-damping * Ci^2 * d), d the Euclidean pixel distance.
  void (*frost)(const float* in, float* out, ptrdiff_t rows, ptrdiff_t cols, int window,
                float damping, float* scratch);
  // Generalised Anscombe transform, elementwise.
  void (*anscombe)(const float* in, float* out, ptrdiff_t n, float gain, float sigma);
  // Exact unbiased inverse through the table, elementwise.
  void (*inverse_anscombe)(const float* in, float* out, ptrdiff_t n,
                           const InverseAnscombeTable* table);
  // Input validation: true if all n values are finite; min and max into *mn, *mx.
  bool (*scan)(const float* p, ptrdiff_t n, float* mn, float* mx);
  // dst[i] = float(src[i]) for n uint8 (bytes == 1) or uint16 (bytes == 2) values.
  void (*widen)(const void* src, int bytes, ptrdiff_t n, float* dst);
  // Model input quantisation fused with the validation scan (quant.hpp): out_type is a
  // QuantOut, 1 <= channels <= kQuantMaxChannels; true if all n values of x are finite.
  bool (*quantize_affine)(const float* x, ptrdiff_t n, int channels, const float* a, const float* b,
                          int out_type, void* dst, float* mn, float* mx);
  // Sum over interior pixels of |I * N|, N = [[1,-2,1],[-2,4,-2],[1,-2,1]] (Immerkaer 1996).
  double (*immerkaer_abs_sum)(const float* in, ptrdiff_t rows, ptrdiff_t cols);
  // ---- denoise: parameter estimation (estimate.hpp) ----
  // Median of the local coefficient of variation sqrt(v)/m (window x window, reflect-101)
  // at the pixels (2i, 2j) whose local mean exceeds 1 % of the largest one; 0 if none
  // (estimate_speckle).  Scratch: speckle_cv_fscratch() floats, speckle_cv_uscratch() words.
  double (*speckle_cv)(const float* in, ptrdiff_t rows, ptrdiff_t cols, int window, float* fscratch,
                       uint32_t* uscratch);
  // numpy.percentile(v[mask != 0], 100 q) ("linear") of n values (mask may be nullptr),
  // exactly; NaN if none is selected.  scratch: summary_scratch(n) words.
  double (*masked_quantile)(const float* v, const uint8_t* mask, ptrdiff_t n, double q,
                            uint32_t* scratch);
  // Tile means of r^2 (r = (I * N) / 6, N the Immerkaer mask) and of the 3x3 box mean over
  // block x block tiles of the interior [1, 1 + tr block) x [1, 1 + tc block), row-major
  // (tr = (rows - 2) / block, tc = (cols - 2) / block).  acc: noise_tiles_scratch().
  void (*noise_tiles)(const float* in, ptrdiff_t rows, ptrdiff_t cols, int block, double* tile_var,
                      double* tile_mean, double* acc);
  // ---- features: GLCM (glcm.hpp) ----
  // Co-occurrence counts of a.image into a.out; false (a.out undefined) if a pixel value
  // is >= a.levels.  *max_value: the largest pixel value (0 if not scanned: uint8, L=256).
  bool (*glcm)(const GlcmArgs& a, int64_t* max_value);
  // out[k * cells + t] = counts[k * stride + t] / sum of matrix k (divided by 1 if 0).
  void (*glcm_normalize)(const uint32_t* counts, ptrdiff_t K, ptrdiff_t cells, ptrdiff_t stride,
                         double* out);
  // The properties of the K L x L matrices at P + k * stride (uint32 counts, or float64 if
  // is_double) into out[p * K + k]: those `need` (GlcmNeed bits) asks for, NaN for the
  // others; false if a float64 entry is negative, NaN or infinite.  scratch:
  // glcm_props_scratch(L) doubles.
  bool (*glcm_props)(const void* P, int is_double, int need, ptrdiff_t L, ptrdiff_t K,
                     ptrdiff_t stride, double* out, double* scratch);
  // ---- features: LBP (lbp.hpp) ----
  // Local binary patterns of a.image into a.out; false (nothing computed) if the image
  // has a NaN, an infinity or a value beyond +-a.max_abs.
  bool (*lbp)(const LbpArgs& a);
  // ---- features: first-order statistics, gradients, quality (stats.hpp) ----
  // Moments, histogram, quantiles, MAD of the (masked) values. scratch: summary_scratch(n).
  void (*summary)(const float* in, ptrdiff_t n, const SummaryRequest* req, Summary* out,
                  uint32_t* scratch);
  // summary() of uint8 values (the counting path from a byte histogram; the results are
  // summary()'s on the float32 copy).  scratch: 4 * 257 words.
  void (*summary_u8)(const uint8_t* in, ptrdiff_t n, const SummaryRequest* req, Summary* out,
                     uint32_t* scratch);
  // Sobel (3x3, reflect-101) magnitude of every pixel into magnitude; magnitude-weighted
  // histogram of the orientation folded into [0, pi) over the masked pixels (mask may be
  // nullptr) into hist[bins].  scratch: gradient_scratch().
  void (*gradient)(const float* in, const uint8_t* mask, ptrdiff_t rows, ptrdiff_t cols, int bins,
                   float* magnitude, double* hist, float* scratch);
  // gradient() + summary() moments + numpy.percentile of the magnitudes of a uint8 image in
  // one pass (stats.hpp): hist[bins] as gradient(); moments = (count, mean, variance) of the
  // float32 magnitudes over the mask; qout[j] = numpy.percentile(mag[mask], 100 q[j]) (NaN
  // if none).  scratch: gradient_u8_scratch() words.
  void (*gradient_u8)(const uint8_t* in, const uint8_t* mask, ptrdiff_t rows, ptrdiff_t cols,
                      int bins, int nq, const double* q, double* qout, double* hist,
                      double* moments, uint32_t* scratch);
  // ---- features: extract() of a uint8 image (extract.hpp) ----
  // values[extract_u8_values()] (see ExtractU8Args); scratch: extract_u8_scratch() bytes,
  // 64-byte aligned.  Always true for a valid request (uint8 values are finite).
  bool (*extract_u8)(const ExtractU8Args& a, double* values, unsigned char* scratch);
  // Sharpness sums (see Sharpness).  scratch: sharpness_scratch().
  void (*sharpness)(const float* in, ptrdiff_t rows, ptrdiff_t cols, Sharpness* out,
                    float* scratch);
  // ---- quality gate (quality.hpp) ----
  // Border bands of u: out = top, bottom, left, right ([t, b) x [l, r)).  scratch:
  // quality_bands_scratch() doubles.
  void (*quality_bands)(const float* a, ptrdiff_t rows, ptrdiff_t cols, double tol, ptrdiff_t* out,
                        double* scratch);
  // Field of view, strokes, masks, noise, moments, quantiles, exposure counts and the
  // allowed edge-point mask.  scratch: quality_scratch() floats.
  void (*quality_region)(const QualityRegionArgs& a, QualityRegion* out, float* scratch);
  // Two-scale gradient-ratio edge statistics.  scratch: quality_scratch() floats.
  void (*quality_edges)(const QualityEdgeArgs& a, QualityEdges* out, float* scratch);
};

}  // namespace medimg
