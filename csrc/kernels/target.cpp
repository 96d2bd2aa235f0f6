// One SIMD target.  CMake compiles this file once per target with -DMEDIMG_TARGET_<NAME>
// and that target's instruction-set flags; each compilation exports
// medimg::table_<name>(), the KernelTable the dispatcher picks at run time.
#include "../kernels.hpp"
#include "../simd.hpp"
#include "common.hpp"
#include "noise.hpp"
#include "scan.hpp"
#include "speckle.hpp"
#include "vst.hpp"

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

const KernelTable* MEDIMG_CAT(table_, MEDIMG_TARGET_ID)() {
  static const KernelTable table = {
      MEDIMG_STR(MEDIMG_TARGET_ID),
      srad_kernel,
      local_stats_kernel,
      frost_kernel,
      anscombe_kernel,
      inverse_anscombe_kernel,
      scan_kernel,
      immerkaer_abs_sum_kernel,
  };
  return &table;
}

}  // namespace medimg
