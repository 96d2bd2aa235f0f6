// One SIMD target.  CMake compiles this file once per target with -DMEDIMG_TARGET_<NAME>
// and that target's instruction-set flags; each compilation exports
// medimg::table_<name>(), the KernelTable the dispatcher picks at run time.
#include "../kernels.hpp"
#include "../simd.hpp"
#include "common.hpp"
#include "glcm.hpp"
#include "lbp.hpp"
#include "noise.hpp"
#include "quality.hpp"
#include "quant.hpp"
#include "scan.hpp"
#include "speckle.hpp"
#include "stats.hpp"
#include "vst.hpp"
// after stats.hpp: uses radix_select
#include "estimate.hpp"
// after glcm.hpp, lbp.hpp and stats.hpp: calls their kernels
#include "extract.hpp"

#if defined(MEDIMG_TARGET_SCALAR)
#define MEDIMG_TARGET_ID scalar
#elif defined(MEDIMG_TARGET_SSE4)
#define MEDIMG_TARGET_ID sse4
#elif defined(MEDIMG_TARGET_AVX2)
#define MEDIMG_TARGET_ID avx2
#elif defined(MEDIMG_TARGET_AVX512)
#define MEDIMG_TARGET_ID avx512
#elif defined(MEDIMG_TARGET_NEON)
#define MEDIMG_TARGET_ID neon
#endif

#define MEDIMG_STR2(x) #x
#define MEDIMG_STR(x) MEDIMG_STR2(x)
#define MEDIMG_CAT2(a, b) a##b
#define MEDIMG_CAT(a, b) MEDIMG_CAT2(a, b)

namespace medimg {

namespace {
// Members are assigned one by one (not aggregate-initialised) so that each kernel family
// adds its own lines without depending on the order of KernelTable's members.
KernelTable make_table() {
  KernelTable t{};
  t.name = MEDIMG_STR(MEDIMG_TARGET_ID);
  // denoise (speckle.hpp, vst.hpp, noise.hpp) and validation (scan.hpp)
  t.srad = srad_kernel;
  t.local_stats = local_stats_kernel;
  t.frost = frost_kernel;
  t.anscombe = anscombe_kernel;
  t.inverse_anscombe = inverse_anscombe_kernel;
  t.scan = scan_kernel;
  t.widen = widen_kernel;
  t.immerkaer_abs_sum = immerkaer_abs_sum_kernel;
  // denoise: parameter estimation (estimate.hpp)
  t.speckle_cv = speckle_cv_kernel;
  t.noise_tiles = noise_tiles_kernel;
  t.masked_quantile = masked_quantile_kernel;
  // runtime: model input quantisation (quant.hpp)
  t.quantize_affine = quantize_affine_kernel;
  // features: GLCM (glcm.hpp)
  t.glcm = glcm_count_kernel;
  t.glcm_normalize = glcm_normalize_kernel;
  t.glcm_props = glcm_props_kernel;
  // features: LBP (lbp.hpp)
  t.lbp = lbp_kernel;
  // features: first-order statistics, gradients, quality (stats.hpp)
  t.summary = summary_kernel;
  t.summary_u8 = summary_u8_kernel;
  t.gradient = gradient_kernel;
  t.gradient_u8 = gradient_u8_kernel;
  t.sharpness = sharpness_kernel;
  // features: extract() of a uint8 image in one call (extract.hpp)
  t.extract_u8 = extract_u8_kernel;
  // quality gate (quality.hpp)
  t.quality_bands = quality_bands_kernel;
  t.quality_region = quality_region_kernel;
  t.quality_edges = quality_edges_kernel;
  return t;
}
}  // namespace

const KernelTable* MEDIMG_CAT(table_, MEDIMG_TARGET_ID)() {
  static const KernelTable table = make_table();
  return &table;
}

}  // namespace medimg
