// Bindings of the denoising kernels (csrc/kernels/speckle.hpp, vst.hpp, noise.hpp,
// estimate.hpp).  Public wrappers: src/medimg_edge/denoise/.
//
// Every filter takes an optional `out` (see output_for) and runs on the calling thread's
// reusable scratch buffer (ThreadScratch), so a loop that passes `out` allocates nothing.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>
#include <vector>

#include <pybind11/stl.h>

#include "common.hpp"

namespace medimg::bind {

namespace {

// Uninitialised scratch: the kernels write every cell they read (see csrc/kernels/).
py::array_t<float> srad(const py::array& image, int iterations, float time_step, float q0,
                        float rho, const std::string& target, const py::object& out_obj) {
  auto in = checked(image, 2, "image");
  if (iterations < 0) throw std::invalid_argument("iterations must be >= 0");
  if (!(time_step > 0.0f && time_step <= 1.0f))
    throw std::invalid_argument("time_step must be in (0, 1]");
  if (!(q0 > 0.0f)) throw std::invalid_argument("q0 must be > 0");
  if (!(rho >= 0.0f)) throw std::invalid_argument("rho must be >= 0");
  const KernelTable* t = table_by_name(target);
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  auto out = output_for(out_obj, in);
  const float* src = in.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    ThreadScratch sc({srad_scratch(rows, cols) * sizeof(float)});
    t->srad(src, dst, rows, cols, iterations, time_step, q0, rho, sc.part<float>(0));
  }
  return out;
}

// Runs a window kernel `fn(src, dst, rows, cols, scratch)` on a checked 2-D image with
// the GIL released.
template <typename Fn>
py::array_t<float> run_window_kernel(const py::array& image, int window, const py::object& out_obj,
                                     Fn fn) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  check_window(window, rows, cols);
  auto out = output_for(out_obj, in);
  const float* src = in.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    ThreadScratch sc({local_scratch(rows, cols, window) * sizeof(float)});
    fn(src, dst, rows, cols, sc.part<float>(0));
  }
  return out;
}

py::array_t<float> local_stats(const py::array& image, int window, float a, float b, float g,
                               const std::string& target, const py::object& out) {
  if (!(a >= 0.0f && b >= 0.0f && g >= 1.0f))
    throw std::invalid_argument("need a >= 0, b >= 0, g >= 1");
  const KernelTable* t = table_by_name(target);
  return run_window_kernel(
      image, window, out,
      [&](const float* s, float* d, ptrdiff_t rows, ptrdiff_t cols, float* scratch) {
        t->local_stats(s, d, rows, cols, window, a, b, g, scratch);
      });
}

py::array_t<float> frost(const py::array& image, int window, float damping,
                         const std::string& target, const py::object& out) {
  if (!(damping >= 0.0f)) throw std::invalid_argument("damping must be >= 0");
  const KernelTable* t = table_by_name(target);
  return run_window_kernel(
      image, window, out,
      [&](const float* s, float* d, ptrdiff_t rows, ptrdiff_t cols, float* scratch) {
        t->frost(s, d, rows, cols, window, damping, scratch);
      });
}

py::array_t<float> anscombe(const py::array& image, float gain, float sigma,
                            const std::string& target, const py::object& out_obj) {
  auto in = checked(image, -1, "image");
  if (!(gain > 0.0f) || !(sigma >= 0.0f)) throw std::invalid_argument("need gain > 0, sigma >= 0");
  const KernelTable* t = table_by_name(target);
  auto out = output_for(out_obj, in);
  const float* src = in.data();
  float* dst = out.mutable_data();
  const ptrdiff_t n = in.size();
  {
    py::gil_scoped_release release;
    t->anscombe(src, dst, n, gain, sigma);
  }
  return out;
}

py::array_t<float> inverse_anscombe(const py::array& image, const py::array& values, float d0,
                                    float step, float sigma2, float gain, const std::string& target,
                                    const py::object& out_obj) {
  auto in = checked(image, -1, "image");
  auto tab = checked(values, 1, "table");
  if (tab.size() < 3) throw std::invalid_argument("table: need at least 3 entries");
  if (!(step > 0.0f) || !(gain > 0.0f) || !(sigma2 >= 0.0f))
    throw std::invalid_argument("need step > 0, gain > 0, sigma2 >= 0");
  const KernelTable* t = table_by_name(target);
  auto out = output_for(out_obj, in);
  InverseAnscombeTable table{tab.data(), tab.size(), d0, 1.0f / step, sigma2, gain};
  const float* src = in.data();
  float* dst = out.mutable_data();
  const ptrdiff_t n = in.size();
  {
    py::gil_scoped_release release;
    t->inverse_anscombe(src, dst, n, &table);
  }
  return out;
}

double immerkaer_abs_sum(const py::array& image, const std::string& target) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  if (rows < 3 || cols < 3) throw std::invalid_argument("image must be at least 3x3");
  const KernelTable* t = table_by_name(target);
  const float* src = in.data();
  ReleaseGilIfLarge release(rows * cols);
  return t->immerkaer_abs_sum(src, rows, cols);
}

// ---- parameter estimation ------------------------------------------------------------------

double speckle_cv(const py::array& image, int window, const std::string& target) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  check_window(window, rows, cols);
  const KernelTable* t = table_by_name(target);
  const float* src = in.data();
  ReleaseGilIfLarge release(rows * cols);
  ThreadScratch sc({speckle_cv_fscratch(rows, cols, window) * sizeof(float),
                    speckle_cv_uscratch(rows, cols) * sizeof(uint32_t)});
  return t->speckle_cv(src, rows, cols, window, sc.part<float>(0), sc.part<uint32_t>(1));
}

// The default-parameter filters: Cu estimated (speckle_cv, window 7 for SRAD, the filter's
// window for Lee / Kuan) and the filter run in one GIL release (one hand-off instead of
// two).  Returns (out, Cu).
//   srad_default: q0 = max(Cu, 1e-3); iterations < 0 picks the ultrasound preset's
//     clip(round(40 Cu), 5, 40) (round half to even, as Python's round).
//   local_default: kind 0 Lee (a = Cu^2, g = 1), 1 Kuan (g = 1 + Cu^2), Cu = min(Cu, 10).
std::tuple<py::array_t<float>, double> srad_default(const py::array& image, int iterations,
                                                    float time_step, float rho,
                                                    const std::string& target,
                                                    const py::object& out_obj) {
  auto in = checked(image, 2, "image");
  if (!(time_step > 0.0f && time_step <= 1.0f))
    throw std::invalid_argument("time_step must be in (0, 1]");
  if (!(rho >= 0.0f)) throw std::invalid_argument("rho must be >= 0");
  const KernelTable* t = table_by_name(target);
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  auto out = output_for(out_obj, in);
  const float* src = in.data();
  float* dst = out.mutable_data();
  double cu;
  {
    py::gil_scoped_release release;
    {
      ThreadScratch sc({speckle_cv_fscratch(rows, cols, 7) * sizeof(float),
                        speckle_cv_uscratch(rows, cols) * sizeof(uint32_t)});
      cu = t->speckle_cv(src, rows, cols, 7, sc.part<float>(0), sc.part<uint32_t>(1));
    }
    if (iterations < 0)
      iterations = static_cast<int>(std::clamp(std::nearbyint(40.0 * cu), 5.0, 40.0));
    const float q0 = static_cast<float>(std::max(cu, 1e-3));
    ThreadScratch sc({srad_scratch(rows, cols) * sizeof(float)});
    if (iterations == 0)
      std::copy(src, src + rows * cols, dst);
    else
      t->srad(src, dst, rows, cols, iterations, time_step, q0, rho, sc.part<float>(0));
  }
  return {out, cu};
}

std::tuple<py::array_t<float>, double> local_default(const py::array& image, int window, int kind,
                                                     const std::string& target,
                                                     const py::object& out_obj) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  check_window(window, rows, cols);
  if (kind != 0 && kind != 1) throw std::invalid_argument("kind must be 0 (Lee) or 1 (Kuan)");
  const KernelTable* t = table_by_name(target);
  auto out = output_for(out_obj, in);
  const float* src = in.data();
  float* dst = out.mutable_data();
  double cu;
  {
    py::gil_scoped_release release;
    {
      ThreadScratch sc({speckle_cv_fscratch(rows, cols, window) * sizeof(float),
                        speckle_cv_uscratch(rows, cols) * sizeof(uint32_t)});
      cu = std::min(t->speckle_cv(src, rows, cols, window, sc.part<float>(0), sc.part<uint32_t>(1)),
                    10.0);
    }
    // As the Python wrappers: cu * cu and 1 + cu * cu in double, then float32.
    const float a = static_cast<float>(cu * cu);
    const float g = kind == 0 ? 1.0f : static_cast<float>(1.0 + cu * cu);
    ThreadScratch sc({local_scratch(rows, cols, window) * sizeof(float)});
    t->local_stats(src, dst, rows, cols, window, a, 0.0f, g, sc.part<float>(0));
  }
  return {out, cu};
}

// numpy.median of v[0..n) (n >= 1; reorders v): the middle value, or the mean of the two
// middle values (float64 add, then halved).
double median_of(double* v, ptrdiff_t n) {
  const ptrdiff_t k = n / 2;
  std::nth_element(v, v + k, v + n);
  const double hi = v[k];
  if (n % 2 == 1) return hi;
  const double lo = *std::max_element(v, v + k);
  return (lo + hi) / 2.0;
}

// estimate_poisson_gaussian after the tile sums (src/medimg_edge/denoise/_noise.py): tiles
// stably sorted by mean and split as numpy.array_split into n_bins parts, each part's
// median mean and median variance, a weighted (sqrt of the part size) least-squares line
// var = gain * mean + var0 solved in closed form on centred sums (the solution of
// numpy.linalg.lstsq up to rounding).
std::tuple<double, double> fit_poisson_gaussian(const double* tile_var, const double* tile_mean,
                                                ptrdiff_t N) {
  std::vector<double> tmp(static_cast<size_t>(N));
  auto fallback = [&]() {
    std::copy(tile_var, tile_var + N, tmp.begin());
    const double med = median_of(tmp.data(), N);
    return std::make_tuple(0.0, std::sqrt(std::max(med, 0.0)));
  };
  const ptrdiff_t n_bins = std::clamp<ptrdiff_t>(N / 16, 1, 32);
  std::vector<ptrdiff_t> order(static_cast<size_t>(N));
  std::iota(order.begin(), order.end(), ptrdiff_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](ptrdiff_t a, ptrdiff_t b) { return tile_mean[a] < tile_mean[b]; });
  std::vector<double> xs, ys, ws;
  const ptrdiff_t base = N / n_bins, extra = N % n_bins;
  ptrdiff_t start = 0;
  for (ptrdiff_t b = 0; b < n_bins; ++b) {
    const ptrdiff_t size = base + (b < extra ? 1 : 0);
    if (size == 0) continue;
    const ptrdiff_t* part = order.data() + start;
    const double xh = tile_mean[part[size / 2]];
    xs.push_back(size % 2 ? xh : (tile_mean[part[size / 2 - 1]] + xh) / 2.0);
    for (ptrdiff_t i = 0; i < size; ++i) tmp[static_cast<size_t>(i)] = tile_var[part[i]];
    ys.push_back(median_of(tmp.data(), size));
    ws.push_back(static_cast<double>(size));
    start += size;
  }
  const size_t m = xs.size();
  if (m < 2) return fallback();
  const double xmin = *std::min_element(xs.begin(), xs.end());
  const double xmax = *std::max_element(xs.begin(), xs.end());
  const double xabs = std::max(std::fabs(xmin), std::fabs(xmax));
  if (xmax - xmin <= 1e-12 * std::max(1.0, xabs)) return fallback();
  double sw = 0.0, sx = 0.0, sy = 0.0;
  for (size_t i = 0; i < m; ++i) {
    sw += ws[i];
    sx += ws[i] * xs[i];
    sy += ws[i] * ys[i];
  }
  const double xbar = sx / sw, ybar = sy / sw;
  double sxx = 0.0, sxy = 0.0;
  for (size_t i = 0; i < m; ++i) {
    sxx += ws[i] * (xs[i] - xbar) * (xs[i] - xbar);
    sxy += ws[i] * (xs[i] - xbar) * (ys[i] - ybar);
  }
  const double gain = sxy / sxx;
  if (!(gain > 0.0)) return fallback();
  const double var0 = ybar - gain * xbar;
  return std::make_tuple(gain, std::sqrt(std::max(var0, 0.0)));
}

std::tuple<double, double> poisson_gaussian(const py::array& image, int block,
                                            const std::string& target) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  if (block < 4 || block > 64) throw std::invalid_argument("block must be in [4, 64]");
  if (rows < 3 * block || cols < 3 * block)
    throw std::invalid_argument("image must be at least 3 * block pixels on each side");
  const KernelTable* t = table_by_name(target);
  const float* src = in.data();
  const ptrdiff_t tr = (rows - 2) / block, tc = (cols - 2) / block, N = tr * tc;
  ReleaseGilIfLarge release(rows * cols);
  ThreadScratch sc({noise_tiles_scratch(cols, block) * sizeof(double),
                    static_cast<size_t>(2 * N) * sizeof(double)});
  double* tiles = sc.part<double>(1);
  t->noise_tiles(src, rows, cols, block, tiles, tiles + N, sc.part<double>(0));
  return fit_poisson_gaussian(tiles, tiles + N, N);
}

}  // namespace

void register_denoise(py::module_& m) {
  using namespace py::literals;
  const py::object none = py::none();
  m.def("srad", &srad, "image"_a, "iterations"_a, "time_step"_a, "q0"_a, "rho"_a, "target"_a = "",
        "out"_a = none, "Speckle Reducing Anisotropic Diffusion (unchecked kernel).");
  m.def("local_stats", &local_stats, "image"_a, "window"_a, "a"_a, "b"_a, "g"_a, "target"_a = "",
        "out"_a = none, "Lee/Kuan/additive-Lee local-statistics filter.");
  m.def("frost", &frost, "image"_a, "window"_a, "damping"_a, "target"_a = "", "out"_a = none,
        "Frost filter.");
  m.def("anscombe", &anscombe, "image"_a, "gain"_a, "sigma"_a, "target"_a = "", "out"_a = none,
        "Generalised Anscombe transform.");
  m.def("inverse_anscombe", &inverse_anscombe, "image"_a, "table"_a, "d0"_a, "step"_a, "sigma2"_a,
        "gain"_a, "target"_a = "", "out"_a = none, "Exact unbiased inverse via a table.");
  m.def("immerkaer_abs_sum", &immerkaer_abs_sum, "image"_a, "target"_a = "",
        "Sum of |I * N| over interior pixels (Immerkaer 1996).");
  m.def("srad_default", &srad_default, "image"_a, "iterations"_a, "time_step"_a, "rho"_a,
        "target"_a = "", "out"_a = none,
        "SRAD with q0 = estimate_speckle (iterations < 0: the preset rule); (out, Cu).");
  m.def("local_default", &local_default, "image"_a, "window"_a, "kind"_a, "target"_a = "",
        "out"_a = none, "Lee (kind 0) / Kuan (1) with Cu = estimate_speckle; (out, Cu).");
  m.def("speckle_cv", &speckle_cv, "image"_a, "window"_a, "target"_a = "",
        "Median local coefficient of variation (estimate_speckle).");
  m.def("poisson_gaussian", &poisson_gaussian, "image"_a, "block"_a, "target"_a = "",
        "(gain, sigma) of the Poisson-Gaussian fit (estimate_poisson_gaussian).");
}

}  // namespace medimg::bind
