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

// Largest filter window the local-statistics kernels accept (odd, >= 3).
constexpr int kMaxWindow = 31;

// Row stride (in floats) of the padded scratch images used by the neighbourhood kernels:
// room for a `radius` border on both sides plus slack so that full-width vector loads
// past the last column stay inside the buffer (16 lanes = AVX-512).
inline ptrdiff_t padded_stride(ptrdiff_t cols, int radius) {
  return ((cols + 2 * radius + 32 + 15) / 16) * 16;
}

// Scratch floats needed by each kernel for an image of `rows` x `cols`.
inline size_t srad_scratch(ptrdiff_t rows, ptrdiff_t cols) {
  return static_cast<size_t>(3 * (rows + 2) * padded_stride(cols, 1));
}
inline size_t local_scratch(ptrdiff_t rows, ptrdiff_t cols, int window) {
  const int r = window / 2;
  return static_cast<size_t>((rows + 2 * r + 2) * padded_stride(cols, r));
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
  // Sum over interior pixels of |I * N|, N = [[1,-2,1],[-2,4,-2],[1,-2,1]] (Immerkaer 1996).
  double (*immerkaer_abs_sum)(const float* in, ptrdiff_t rows, ptrdiff_t cols);
};

}  // namespace medimg
