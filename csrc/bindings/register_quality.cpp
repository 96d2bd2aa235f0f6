// Bindings of csrc/kernels/quality.hpp: the quality gate's region and edge passes on the
// analysis image, in one call with the GIL released once (quality_measures), and the border
// bands alone (quality_bands, for field_of_view).  Public wrapper: src/medimg_edge/quality.py.
#include <stdexcept>
#include <string>

#include "common.hpp"

namespace medimg::bind {

namespace {

using namespace pybind11::literals;
using u8array = py::array_t<uint8_t, py::array::c_style>;

// The checked 2-D float32 analysis image (at least 3 x 3).
farray analysis(const py::array& a) {
  farray img = checked(a, 2, "a");
  if (img.shape(0) < 3 || img.shape(1) < 3)
    throw std::invalid_argument("a: expected at least 3 x 3 pixels");
  return img;
}

// Half of an odd symmetric tap vector (2 r + 1 float32 values): the centre, then r taps.
const float* half_taps(const farray& taps, int* radius, const char* what) {
  if (taps.ndim() != 1 || taps.size() % 2 == 0 || taps.size() > 2 * kQualityMaxRadius + 1)
    throw std::invalid_argument(std::string(what) + ": expected 1 ... " +
                                std::to_string(2 * kQualityMaxRadius + 1) + " (odd) taps");
  *radius = static_cast<int>(taps.size() / 2);
  return taps.data() + *radius;
}

py::tuple quality_measures(const py::array& a_in, const py::array& fov_in, bool fov_given,
                           double band_tol, float stroke_tophat, float stroke_level,
                           int inner_margin, int stroke_margin, float sat_lo, float sat_hi,
                           const py::array& q_in, const py::array& taps_a_in,
                           const py::array& taps_b_in, double edge_factor, double min_threshold,
                           double top_fraction, int min_edges, const std::string& target) {
  const KernelTable* t = table_by_name(target);
  const farray a = analysis(a_in);
  const ptrdiff_t rows = a.shape(0), cols = a.shape(1);
  if (!py::isinstance<u8array>(fov_in)) throw std::invalid_argument("fov: expected a uint8 array");
  u8array fov = py::reinterpret_borrow<u8array>(fov_in);
  if (fov.dtype().kind() != 'u' || fov.itemsize() != 1 || !(fov.flags() & py::array::c_style) ||
      !fov.writeable() || fov.ndim() != 2 || fov.shape(0) != rows || fov.shape(1) != cols)
    throw std::invalid_argument("fov: expected a writeable C-contiguous uint8 array shaped like a");
  if (!py::isinstance<py::array_t<double>>(q_in) || q_in.dtype().kind() != 'f' ||
      q_in.itemsize() != 8 || q_in.ndim() != 1 || q_in.size() > kStatsMaxQuantiles)
    throw std::invalid_argument("q: expected at most 16 float64 quantiles");
  const auto q = py::reinterpret_borrow<py::array_t<double, py::array::c_style>>(q_in);
  for (ptrdiff_t i = 0; i < q.size(); ++i)
    if (!(q.data()[i] >= 0.0 && q.data()[i] <= 1.0))
      throw std::invalid_argument("q: quantiles must be in [0, 1]");
  const farray taps_a = checked(taps_a_in, 1, "taps_a"), taps_b = checked(taps_b_in, 1, "taps_b");
  QualityEdgeArgs e{};
  e.taps_a = half_taps(taps_a, &e.radius_a, "taps_a");
  e.taps_b = half_taps(taps_b, &e.radius_b, "taps_b");
  if (inner_margin < 1 || inner_margin > 64 || stroke_margin < 0 || stroke_margin > 64)
    throw std::invalid_argument("inner_margin must be in [1, 64], stroke_margin in [0, 64]");
  if (!(top_fraction > 0.0 && top_fraction <= 1.0) || min_edges < 1)
    throw std::invalid_argument("top_fraction must be in (0, 1], min_edges >= 1");

  QualityRegionArgs r{};
  r.a = a.data();
  r.rows = rows;
  r.cols = cols;
  r.fov = fov.mutable_data();
  r.fov_given = fov_given ? 1 : 0;
  r.band_tol = band_tol;
  r.stroke_tophat = stroke_tophat;
  r.stroke_level = stroke_level;
  r.inner_margin = inner_margin;
  r.stroke_margin = stroke_margin;
  r.sat_lo = sat_lo;
  r.sat_hi = sat_hi;
  r.nq = static_cast<int>(q.size());
  r.q = q.data();
  QualityRegion reg{};
  QualityEdges edges{};
  {
    // Always released: the region and edge passes make a dozen passes over the image
    // (about 0.2 ms on the 128 x 128 ultrasound analysis image, far beyond the hand-off's
    // cost), and a Diagnoser runs them on every frame, often from two threads at once.
    py::gil_scoped_release nogil;
    ThreadScratch sc(
        {quality_scratch(rows, cols) * sizeof(float), static_cast<size_t>(rows * cols)});
    r.allowed = sc.part<uint8_t>(1);
    t->quality_region(r, &reg, sc.part<float>(0));
    e.a = a.data();
    e.rows = rows;
    e.cols = cols;
    e.allowed = r.allowed;
    const double thr = edge_factor * reg.noise_sigma;
    e.threshold = static_cast<float>(thr > min_threshold ? thr : min_threshold);
    e.top_fraction = top_fraction;
    e.min_edges = min_edges;
    t->quality_edges(e, &edges, sc.part<float>(0));
  }
  py::tuple quant(r.nq);
  for (int i = 0; i < r.nq; ++i) quant[i] = reg.quantiles[i];
  py::tuple region = py::make_tuple(reg.n_fov, reg.n_strokes, reg.n_stat, reg.n_inner,
                                    reg.noise_sigma, reg.mean, reg.std, reg.n_sat, reg.n_under);
  py::tuple band = py::make_tuple(reg.band[0], reg.band[1], reg.band[2], reg.band[3]);
  return py::make_tuple(
      region, quant, py::make_tuple(edges.n_all, edges.n_used, edges.mean_a2, edges.mean_b2), band);
}

py::tuple quality_bands(const py::array& a_in, double tol, const std::string& target) {
  const KernelTable* t = table_by_name(target);
  const farray a = analysis(a_in);
  const ptrdiff_t rows = a.shape(0), cols = a.shape(1);
  ptrdiff_t out[4];
  {
    ReleaseGilIfLarge nogil(rows * cols);
    ThreadScratch sc({quality_bands_scratch(rows, cols) * sizeof(double)});
    t->quality_bands(a.data(), rows, cols, tol, out, sc.part<double>(0));
  }
  return py::make_tuple(out[0], out[1], out[2], out[3]);
}

}  // namespace

void register_quality(py::module_& m) {
  m.def("quality_measures", &quality_measures, "a"_a, "fov"_a, "fov_given"_a, "band_tol"_a,
        "stroke_tophat"_a, "stroke_level"_a, "inner_margin"_a, "stroke_margin"_a, "sat_lo"_a,
        "sat_hi"_a, "q"_a, "taps_a"_a, "taps_b"_a, "edge_factor"_a, "min_threshold"_a,
        "top_fraction"_a, "min_edges"_a, "target"_a = "",
        "The quality gate's region and edge passes on the analysis image a (GIL released "
        "once; fov is read if fov_given, else the border-band rectangle is written into it): "
        "((n_fov, n_strokes, n_stat, n_inner, noise_sigma, mean, std, n_sat, "
        "n_under), quantiles, (n_edges, n_used, mean_a2, mean_b2), (top, bottom, left, "
        "right)).");
  m.def("quality_bands", &quality_bands, "a"_a, "tol"_a, "target"_a = "",
        "Uniform border bands of the analysis image: (top, bottom, left, right).");
}

}  // namespace medimg::bind
