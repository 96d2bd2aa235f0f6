// Bindings of the denoising kernels (csrc/kernels/speckle.hpp, vst.hpp, noise.hpp).
// Public wrappers: src/medimg_edge/denoise/.
#include <memory>
#include <vector>

#include "common.hpp"

namespace medimg::bind {

namespace {

py::array_t<float> new_like(ptrdiff_t rows, ptrdiff_t cols) {
  return py::array_t<float>({rows, cols});
}

// Uninitialised scratch: the kernels write every cell they read (see csrc/kernels/).
std::unique_ptr<float[]> scratch_of(size_t n) { return std::unique_ptr<float[]>(new float[n]); }

py::array_t<float> srad(const py::array& image, int iterations, float time_step, float q0,
                        float rho, const std::string& target) {
  auto in = checked(image, 2, "image");
  if (iterations < 0) throw std::invalid_argument("iterations must be >= 0");
  if (!(time_step > 0.0f && time_step <= 1.0f))
    throw std::invalid_argument("time_step must be in (0, 1]");
  if (!(q0 > 0.0f)) throw std::invalid_argument("q0 must be > 0");
  if (!(rho >= 0.0f)) throw std::invalid_argument("rho must be >= 0");
  const KernelTable* t = table_by_name(target);
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  auto out = new_like(rows, cols);
  auto scratch = scratch_of(srad_scratch(rows, cols));
  const float* src = in.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    t->srad(src, dst, rows, cols, iterations, time_step, q0, rho, scratch.get());
  }
  return out;
}

// Runs a window kernel `fn(src, dst, rows, cols, scratch)` on a checked 2-D image with
// the GIL released.
template <typename Fn>
py::array_t<float> run_window_kernel(const py::array& image, int window, Fn fn) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  check_window(window, rows, cols);
  auto out = new_like(rows, cols);
  auto scratch = scratch_of(local_scratch(rows, cols, window));
  const float* src = in.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    fn(src, dst, rows, cols, scratch.get());
  }
  return out;
}

py::array_t<float> local_stats(const py::array& image, int window, float a, float b, float g,
                               const std::string& target) {
  if (!(a >= 0.0f && b >= 0.0f && g >= 1.0f))
    throw std::invalid_argument("need a >= 0, b >= 0, g >= 1");
  const KernelTable* t = table_by_name(target);
  return run_window_kernel(
      image, window, [&](const float* s, float* d, ptrdiff_t rows, ptrdiff_t cols, float* scratch) {
        t->local_stats(s, d, rows, cols, window, a, b, g, scratch);
      });
}

py::array_t<float> frost(const py::array& image, int window, float damping,
                         const std::string& target) {
  if (!(damping >= 0.0f)) throw std::invalid_argument("damping must be >= 0");
  const KernelTable* t = table_by_name(target);
  return run_window_kernel(
      image, window, [&](const float* s, float* d, ptrdiff_t rows, ptrdiff_t cols, float* scratch) {
        t->frost(s, d, rows, cols, window, damping, scratch);
      });
}

py::array_t<float> anscombe(const py::array& image, float gain, float sigma,
                            const std::string& target) {
  auto in = checked(image, -1, "image");
  if (!(gain > 0.0f) || !(sigma >= 0.0f)) throw std::invalid_argument("need gain > 0, sigma >= 0");
  const KernelTable* t = table_by_name(target);
  std::vector<ptrdiff_t> shape(in.shape(), in.shape() + in.ndim());
  py::array_t<float> out(shape);
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
                                    float step, float sigma2, float gain,
                                    const std::string& target) {
  auto in = checked(image, -1, "image");
  auto tab = checked(values, 1, "table");
  if (tab.size() < 3) throw std::invalid_argument("table: need at least 3 entries");
  if (!(step > 0.0f) || !(gain > 0.0f) || !(sigma2 >= 0.0f))
    throw std::invalid_argument("need step > 0, gain > 0, sigma2 >= 0");
  const KernelTable* t = table_by_name(target);
  std::vector<ptrdiff_t> shape(in.shape(), in.shape() + in.ndim());
  py::array_t<float> out(shape);
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
  double s;
  {
    py::gil_scoped_release release;
    s = t->immerkaer_abs_sum(src, rows, cols);
  }
  return s;
}

}  // namespace

void register_denoise(py::module_& m) {
  using namespace py::literals;
  m.def("srad", &srad, "image"_a, "iterations"_a, "time_step"_a, "q0"_a, "rho"_a, "target"_a = "",
        "Speckle Reducing Anisotropic Diffusion (unchecked kernel).");
  m.def("local_stats", &local_stats, "image"_a, "window"_a, "a"_a, "b"_a, "g"_a, "target"_a = "",
        "Lee/Kuan/additive-Lee local-statistics filter.");
  m.def("frost", &frost, "image"_a, "window"_a, "damping"_a, "target"_a = "", "Frost filter.");
  m.def("anscombe", &anscombe, "image"_a, "gain"_a, "sigma"_a, "target"_a = "",
        "Generalised Anscombe transform.");
  m.def("inverse_anscombe", &inverse_anscombe, "image"_a, "table"_a, "d0"_a, "step"_a, "sigma2"_a,
        "gain"_a, "target"_a = "", "Exact unbiased inverse via a table.");
  m.def("immerkaer_abs_sum", &immerkaer_abs_sum, "image"_a, "target"_a = "",
        "Sum of |I * N| over interior pixels (Immerkaer 1996).");
}

}  // namespace medimg::bind
