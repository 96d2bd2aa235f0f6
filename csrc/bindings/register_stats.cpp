// Bindings of csrc/kernels/stats.hpp: first-order statistics (summary), Sobel gradient
// magnitude / orientation histogram, and the sharpness sums of the quality measures.
// Public wrappers: src/medimg_edge/features/_firstorder.py, src/medimg_edge/quality.py.
#include <cmath>
#include <memory>
#include <tuple>
#include <vector>

#include <pybind11/stl.h>

#include "common.hpp"

namespace medimg::bind {

namespace {

using u8array = py::array_t<uint8_t, py::array::c_style>;
using f64array = py::array_t<double, py::array::c_style>;

// Scratch memory reused across the calls of one thread (one buffer per kSlot): a fresh
// multi-megabyte buffer per call costs page faults (glibc returns large blocks to the OS),
// which take longer than the kernels themselves on a 512x512 frame.  Requests beyond
// kCacheMax bytes get a temporary buffer and are not kept.
constexpr size_t kCacheMax = size_t(64) << 20;

template <typename T, int kSlot>
T* reuse(size_t n, std::unique_ptr<T[]>* fallback) {
  thread_local std::vector<T> cache;
  if (n * sizeof(T) > kCacheMax) {
    fallback->reset(new T[n]);
    return fallback->get();
  }
  if (cache.size() < n) cache.resize(n);
  return cache.data();
}

// nullptr for None; else a C-contiguous uint8 array of exactly `size` elements.
const uint8_t* checked_mask(const py::object& mask, ptrdiff_t size, u8array* keep) {
  if (mask.is_none()) return nullptr;
  if (!py::isinstance<py::array>(mask))
    throw std::invalid_argument("mask: expected a uint8 array or None");
  const py::array a = py::reinterpret_borrow<py::array>(mask);
  if (a.dtype().kind() != 'u' || a.itemsize() != 1)
    throw std::invalid_argument("mask: expected a uint8 array");
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument("mask: expected a C-contiguous array");
  if (a.size() != size) throw std::invalid_argument("mask: size differs from the image's");
  *keep = py::reinterpret_borrow<u8array>(a);
  return keep->data();
}

f64array checked_quantiles(const py::array& q) {
  if (!py::isinstance<py::array_t<double>>(q) || q.dtype().kind() != 'f' || q.itemsize() != 8 ||
      q.ndim() != 1 || !(q.flags() & py::array::c_style))
    throw std::invalid_argument("q: expected a C-contiguous 1-D float64 array");
  if (q.size() > kStatsMaxQuantiles)
    throw std::invalid_argument("q: at most " + std::to_string(kStatsMaxQuantiles) + " quantiles");
  auto qa = py::reinterpret_borrow<f64array>(q);
  for (ptrdiff_t i = 0; i < qa.size(); ++i)
    if (!(qa.data()[i] >= 0.0 && qa.data()[i] <= 1.0))
      throw std::invalid_argument("q: quantiles must be in [0, 1]");
  return qa;
}

void check_bins(int bins, int lo, int hi) {
  if (bins < lo || bins > hi)
    throw std::invalid_argument("bins must be in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
}

py::dict summary_dict(const Summary& s) {
  py::dict d;
  d["count"] = s.count;
  d["min"] = s.min;
  d["max"] = s.max;
  d["mean"] = s.mean;
  d["sumsq"] = s.sumsq;
  d["m2"] = s.m2;
  d["m3"] = s.m3;
  d["m4"] = s.m4;
  d["absdev"] = s.absdev;
  d["mad"] = s.mad;
  d["rmad"] = s.rmad;
  d["n_below"] = s.n_below;
  d["n_above"] = s.n_above;
  d["counting"] = s.counting != 0;
  return d;
}

// A request for the moments and the quantiles qa (into qout) only: no mask, histogram, MAD.
SummaryRequest quantile_request(const f64array& qa, py::array_t<double>& qout) {
  SummaryRequest rq{};
  rq.nq = static_cast<int>(qa.size());
  rq.q = qa.data();
  rq.qout = qout.mutable_data();
  rq.rmad_lo = rq.rmad_hi = -1.0;
  return rq;
}

// (measures, hist, quantiles)
std::tuple<py::dict, py::array_t<uint32_t>, py::array_t<double>> summary(
    const py::array& values, const py::object& mask, int bins, const py::array& q, bool mad,
    double rmad_lo, double rmad_hi, float below, float above, const std::string& target) {
  // uint8 values (C-contiguous) take the byte-histogram kernel, float32 the general one.
  const bool u8 = values.dtype().kind() == 'u' && values.itemsize() == 1;
  py::array_t<float> in;
  if (u8) {
    if (!(values.flags() & py::array::c_style))
      throw std::invalid_argument("values: expected a C-contiguous array");
  } else {
    in = checked(values, -1, "values");
  }
  const ptrdiff_t n = values.size();
  u8array keep;
  const uint8_t* m = checked_mask(mask, n, &keep);
  check_bins(bins, 0, kStatsMaxBins);
  const f64array qa = checked_quantiles(q);
  if (std::isnan(rmad_lo) || std::isnan(rmad_hi))
    throw std::invalid_argument("rmad bounds must not be NaN");
  const KernelTable* t = table_by_name(target);
  py::array_t<uint32_t> hist(bins);
  py::array_t<double> qout(qa.size());
  SummaryRequest rq{};
  rq.mask = m;
  rq.bins = bins;
  rq.hist = hist.mutable_data();
  rq.nq = static_cast<int>(qa.size());
  rq.q = qa.data();
  rq.qout = qout.mutable_data();
  rq.mad = mad ? 1 : 0;
  rq.rmad_lo = rmad_lo;
  rq.rmad_hi = rmad_hi;
  rq.below = below;
  rq.above = above;
  Summary s{};
  if (u8) {
    const uint8_t* src = static_cast<const uint8_t*>(values.data());
    uint32_t scratch[4 * 257];
    ReleaseGilIfLarge release(n);
    t->summary_u8(src, n, &rq, &s, scratch);
  } else {
    const float* src = in.data();
    std::unique_ptr<uint32_t[]> fallback;
    uint32_t* scratch = reuse<uint32_t, 0>(summary_scratch(n), &fallback);
    py::gil_scoped_release release;
    t->summary(src, n, &rq, &s, scratch);
  }
  return {summary_dict(s), hist, qout};
}

// (magnitude, orientation histogram)
std::tuple<py::array_t<float>, py::array_t<double>> gradient(const py::array& image,
                                                             const py::object& mask, int bins,
                                                             const std::string& target) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  u8array keep;
  const uint8_t* m = checked_mask(mask, in.size(), &keep);
  check_bins(bins, 1, kGradientMaxBins);
  const KernelTable* t = table_by_name(target);
  py::array_t<float> mag({rows, cols});
  py::array_t<double> hist(bins);
  std::unique_ptr<float[]> fallback;
  float* scratch = reuse<float, 1>(gradient_scratch(rows, cols), &fallback);
  const float* src = in.data();
  float* dst = mag.mutable_data();
  double* h = hist.mutable_data();
  {
    py::gil_scoped_release release;
    t->gradient(src, m, rows, cols, bins, dst, h, scratch);
  }
  return {mag, hist};
}

// gradient() then summary() of the magnitudes over the mask, without handing the
// magnitude image to Python: (measures, orientation histogram, quantiles).
// A uint8 image takes the fused integer kernel (gradient_u8: no float copy, no magnitude
// image); the dict then holds count, mean and m2 (the variance) only.
std::tuple<py::dict, py::array_t<double>, py::array_t<double>> gradient_summary(
    const py::array& image, const py::object& mask, int bins, const py::array& q,
    const std::string& target) {
  const bool u8 = image.dtype().kind() == 'u' && image.itemsize() == 1;
  py::array_t<float> in;
  if (u8) {
    if (image.ndim() != 2 || !(image.flags() & py::array::c_style))
      throw std::invalid_argument("image: expected a C-contiguous 2-D array");
    if (image.size() == 0) throw std::invalid_argument("image: empty array");
  } else {
    in = checked(image, 2, "image");
  }
  const ptrdiff_t rows = image.shape(0), cols = image.shape(1), n = image.size();
  u8array keep;
  const uint8_t* m = checked_mask(mask, n, &keep);
  check_bins(bins, 1, kGradientMaxBins);
  const f64array qa = checked_quantiles(q);
  const KernelTable* t = table_by_name(target);
  py::array_t<double> hist(bins);
  py::array_t<double> qout(qa.size());
  if (u8) {
    const uint8_t* src = static_cast<const uint8_t*>(image.data());
    double* h = hist.mutable_data();
    const double* qv = qa.data();
    double* qo = qout.mutable_data();
    const int nq = static_cast<int>(qa.size());
    double moments[3];
    {
      py::gil_scoped_release release;
      ThreadScratch sc({gradient_u8_scratch(rows, cols) * sizeof(uint32_t)});
      t->gradient_u8(src, m, rows, cols, bins, nq, qv, qo, h, moments, sc.part<uint32_t>(0));
    }
    py::dict d;
    d["count"] = moments[0];
    d["mean"] = moments[1];
    d["m2"] = moments[2];
    return {d, hist, qout};
  }
  std::unique_ptr<float[]> fb1, fb2;
  std::unique_ptr<uint32_t[]> fb3;
  float* scratch = reuse<float, 1>(gradient_scratch(rows, cols), &fb1);
  float* mag = reuse<float, 2>(static_cast<size_t>(n), &fb2);
  uint32_t* sscratch = reuse<uint32_t, 0>(summary_scratch(n), &fb3);
  // The moments from summary (no order statistics), the quantiles from masked_quantile
  // (the same exact values as summary's radix path, in fewer passes).
  SummaryRequest rq{};
  rq.rmad_lo = rq.rmad_hi = -1.0;
  rq.mask = m;
  Summary s{};
  const float* src = in.data();
  double* h = hist.mutable_data();
  const double* qv = qa.data();
  double* qo = qout.mutable_data();
  const ptrdiff_t nq = qa.size();
  {
    py::gil_scoped_release release;
    t->gradient(src, m, rows, cols, bins, mag, h, scratch);
    t->summary(mag, n, &rq, &s, sscratch);
    for (ptrdiff_t k = 0; k < nq; ++k) qo[k] = t->masked_quantile(mag, m, n, qv[k], sscratch);
  }
  return {summary_dict(s), hist, qout};
}

// Quantiles q of the subsample image[::step_y, ::step_x] (a float32 C-contiguous 2-D
// image), the strided copy and the order statistics with the GIL released once: the
// percentile window of runtime.window_bounds.
py::array_t<double> subsample_quantiles(const py::array& image, ptrdiff_t step_y, ptrdiff_t step_x,
                                        const py::array& q, const std::string& target) {
  auto in = checked(image, 2, "image");
  if (step_y < 1 || step_x < 1) throw std::invalid_argument("steps must be >= 1");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  const ptrdiff_t sr = (rows + step_y - 1) / step_y, sc = (cols + step_x - 1) / step_x;
  const ptrdiff_t n = sr * sc;
  const f64array qa = checked_quantiles(q);
  const KernelTable* t = table_by_name(target);
  py::array_t<double> qout(qa.size());
  std::unique_ptr<float[]> fb1;
  std::unique_ptr<uint32_t[]> fb2;
  float* sub = reuse<float, 4>(static_cast<size_t>(n), &fb1);
  uint32_t* sscratch = reuse<uint32_t, 0>(summary_scratch(n), &fb2);
  SummaryRequest rq = quantile_request(qa, qout);
  Summary s{};
  const float* src = in.data();
  {
    ReleaseGilIfLarge release(rows * cols);
    float* d = sub;
    for (ptrdiff_t y = 0; y < rows; y += step_y) {
      const float* row = src + y * cols;
      for (ptrdiff_t x = 0; x < cols; x += step_x) *d++ = row[x];
    }
    t->summary(sub, n, &rq, &s, sscratch);
  }
  return qout;
}

py::dict sharpness_dict(const Sharpness& s) {
  py::dict d;
  d["lap_sum"] = s.lap_sum;
  d["lap_sumsq"] = s.lap_sumsq;
  d["tenengrad_sum"] = s.tenengrad_sum;
  d["diff_h"] = s.diff_h;
  d["lost_h"] = s.lost_h;
  d["diff_v"] = s.diff_v;
  d["lost_v"] = s.lost_v;
  return d;
}

py::dict sharpness(const py::array& image, const std::string& target) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1);
  const KernelTable* t = table_by_name(target);
  std::unique_ptr<float[]> fallback;
  float* scratch = reuse<float, 3>(sharpness_scratch(rows, cols), &fallback);
  Sharpness s{};
  const float* src = in.data();
  {
    py::gil_scoped_release release;
    t->sharpness(src, rows, cols, &s, scratch);
  }
  return sharpness_dict(s);
}

// The sums behind quality.assess in one call, with the GIL released once (a Diagnoser
// runs it on every frame, often from several threads): summary() of every pixel with
// quantiles q and the counts below / above the range, sharpness(), and the Immerkaer
// |I * N| sum of the noise estimate.  (measures, quantiles, sharpness, immerkaer sum)
std::tuple<py::dict, py::array_t<double>, py::dict, double> quality_stats(
    const py::array& image, const py::array& q, float below, float above,
    const std::string& target) {
  auto in = checked(image, 2, "image");
  const ptrdiff_t rows = in.shape(0), cols = in.shape(1), n = in.size();
  if (rows < 3 || cols < 3) throw std::invalid_argument("image must be at least 3x3");
  const f64array qa = checked_quantiles(q);
  const KernelTable* t = table_by_name(target);
  py::array_t<double> qout(qa.size());
  std::unique_ptr<uint32_t[]> fb1;
  std::unique_ptr<float[]> fb2;
  uint32_t* sscratch = reuse<uint32_t, 0>(summary_scratch(n), &fb1);
  float* hscratch = reuse<float, 3>(sharpness_scratch(rows, cols), &fb2);
  SummaryRequest rq = quantile_request(qa, qout);
  rq.below = below;
  rq.above = above;
  Summary s{};
  Sharpness h{};
  double noise = 0.0;
  const float* src = in.data();
  {
    py::gil_scoped_release release;
    t->summary(src, n, &rq, &s, sscratch);
    t->sharpness(src, rows, cols, &h, hscratch);
    noise = t->immerkaer_abs_sum(src, rows, cols);
  }
  return {summary_dict(s), qout, sharpness_dict(h), noise};
}

// features.extract() of a uint8 image without a mask in one call, the GIL released once
// (extract.hpp): the values in extract()'s key order as float64 (n_values,).  With
// appearance, `image` is a float32 image in [0, 1] and the values are the appearance
// descriptor's (medimg_edge._appearance).  dr, dc: the GLCM offsets (features._glcm.
// _offsets, distance-major, n_dist * n_angle of them); rp, cp: the LBP offsets.
py::array_t<double> extract_u8(const py::array& image, int levels, const py::array& dr_in,
                               const py::array& dc_in, int n_dist, const py::array& rp_in,
                               const py::array& cp_in, int firstorder_bins, int gradient_bins,
                               bool appearance, const std::string& target) {
  const bool u8 = image.dtype().kind() == 'u' && image.itemsize() == 1;
  const bool f32 = image.dtype().kind() == 'f' && image.itemsize() == 4;
  if (appearance ? !f32 : !u8)
    throw std::invalid_argument(appearance ? "image: expected a float32 array (appearance)"
                                           : "image: expected a uint8 array");
  if (image.ndim() != 2 || !(image.flags() & py::array::c_style))
    throw std::invalid_argument("image: expected a C-contiguous 2-D array");
  if (image.size() == 0) throw std::invalid_argument("image: empty array");
  if (image.dtype().byteorder() == '>') throw std::invalid_argument("image: not native order");
  const ptrdiff_t rows = image.shape(0), cols = image.shape(1);
  check_bins(firstorder_bins, 1, kStatsMaxBins);
  check_bins(gradient_bins, 1, kGradientMaxBins);
  if (levels < 2 || levels > 256) throw std::invalid_argument("levels must be in [2, 256]");
  auto dr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(dr_in);
  auto dc = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(dc_in);
  if (!dr || !dc || dr.ndim() != 1 || dc.ndim() != 1 || dr.size() != dc.size())
    throw std::invalid_argument("dr, dc: expected 1-D integer arrays of one length");
  const ptrdiff_t K = dr.size();
  if (n_dist < 1 || n_dist > kExtractMaxDistances || K % n_dist != 0 ||
      K / n_dist > kExtractMaxAngles || K < 1)
    throw std::invalid_argument("dr, dc: n_dist * n_angle offsets, n_dist <= 64, n_angle <= 16");
  std::vector<ptrdiff_t> ro(static_cast<size_t>(K)), co(static_cast<size_t>(K));
  for (ptrdiff_t k = 0; k < K; ++k) {
    const int64_t r = dr.data()[k], c = dc.data()[k];
    if (r < -rows || r > rows || c < -cols || c > cols)
      throw std::invalid_argument("dr, dc: offsets must be clamped to the image");
    ro[static_cast<size_t>(k)] = static_cast<ptrdiff_t>(r);
    co[static_cast<size_t>(k)] = static_cast<ptrdiff_t>(c);
  }
  auto rp = py::array_t<double, py::array::c_style>::ensure(rp_in);
  auto cp = py::array_t<double, py::array::c_style>::ensure(cp_in);
  if (!rp || !cp || rp.ndim() != 1 || rp.size() != cp.size() || rp.size() < 1 ||
      rp.size() > kLbpMaxP)
    throw std::invalid_argument("rp, cp: expected two float64 arrays of P <= 32 offsets");
  const int P = static_cast<int>(rp.size());
  for (int i = 0; i < P; ++i)
    if (!(std::fabs(rp.data()[i]) <= 131072.0 && std::fabs(cp.data()[i]) <= 131072.0))
      throw std::invalid_argument("rp, cp: offsets must be finite, |x| <= 2^17");
  const KernelTable* t = table_by_name(target);
  ExtractU8Args a{};
  a.image = appearance ? nullptr : static_cast<const uint8_t*>(image.data());
  a.unit = appearance ? static_cast<const float*>(image.data()) : nullptr;
  a.rows = rows;
  a.cols = cols;
  a.firstorder_bins = firstorder_bins;
  a.levels = levels;
  a.n_dist = n_dist;
  a.n_angle = static_cast<int>(K / n_dist);
  a.dr = ro.data();
  a.dc = co.data();
  a.lbp_P = P;
  a.rp = rp.data();
  a.cp = cp.data();
  a.gradient_bins = gradient_bins;
  a.appearance = appearance ? 1 : 0;
  py::array_t<double> out(extract_u8_values(n_dist, P, gradient_bins));
  double* dst = out.mutable_data();
  bool ok;
  {
    py::gil_scoped_release release;
    ThreadScratch sc(
        {extract_u8_scratch(rows, cols, firstorder_bins, levels, static_cast<int>(K), P, a.cp)});
    ok = t->extract_u8(a, dst, sc.part<unsigned char>(0));
  }
  if (!ok) throw std::runtime_error("extract_u8: a kernel refused a valid request");
  return out;
}

}  // namespace

void register_stats(py::module_& m) {
  using namespace py::literals;
  m.def("summary", &summary, "values"_a, "mask"_a, "bins"_a, "q"_a, "mad"_a, "rmad_lo"_a,
        "rmad_hi"_a, "below"_a, "above"_a, "target"_a = "",
        "Moments, histogram, quantiles and deviations of the (masked) values.");
  m.def("gradient", &gradient, "image"_a, "mask"_a, "bins"_a, "target"_a = "",
        "Sobel magnitude and magnitude-weighted orientation histogram.");
  m.def("gradient_summary", &gradient_summary, "image"_a, "mask"_a, "bins"_a, "q"_a,
        "target"_a = "",
        "Orientation histogram and summary (moments, quantiles) of the Sobel magnitudes.");
  m.def("sharpness", &sharpness, "image"_a, "target"_a = "",
        "Laplacian, Tenengrad and blur-effect sums.");
  m.def("subsample_quantiles", &subsample_quantiles, "image"_a, "step_y"_a, "step_x"_a, "q"_a,
        "target"_a = "", "Quantiles of image[::step_y, ::step_x], the GIL released once.");
  m.def("extract_u8", &extract_u8, "image"_a, "levels"_a, "dr"_a, "dc"_a, "n_dist"_a, "rp"_a,
        "cp"_a, "firstorder_bins"_a, "gradient_bins"_a, "appearance"_a = false, "target"_a = "",
        "features.extract() of a uint8 image (or the appearance descriptor) in one call.");
  m.def("quality_stats", &quality_stats, "image"_a, "q"_a, "below"_a, "above"_a, "target"_a = "",
        "summary(), sharpness() and the Immerkaer sum of one image, the GIL released once.");
}

}  // namespace medimg::bind
