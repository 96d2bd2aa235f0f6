// Bindings of csrc/kernels/lbp.hpp: local binary patterns, bit-identical to
// skimage.feature.local_binary_pattern.  Public wrapper: src/medimg_edge/features/_lbp.py
// (which computes the sample offsets exactly as scikit-image does).
#include <cmath>
#include <memory>
#include <tuple>

#include <pybind11/stl.h>

#include "common.hpp"

namespace medimg::bind {

namespace {

int dtype_code(const py::array& a) {
  const py::dtype dt = a.dtype();
  if (dt.byteorder() == '>') return -1;  // x86-64 and aarch64 Linux are little-endian
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'u' && size == 1) return kLbpU8;
  if (kind == 'u' && size == 2) return kLbpU16;
  if (kind == 'f' && size == 4) return kLbpF32;
  if (kind == 'f' && size == 8) return kLbpF64;
  return -1;
}

py::array_t<double, py::array::c_style> offsets(const py::array& a, int P, const char* what) {
  if (!py::isinstance<py::array_t<double>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 8 ||
      a.dtype().byteorder() == '>' || a.ndim() != 1 || !(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(what) + ": expected a C-contiguous 1-D float64 array");
  if (a.shape(0) != P)
    throw std::invalid_argument(std::string(what) + ": expected P = " + std::to_string(P) +
                                " values");
  auto arr = py::reinterpret_borrow<py::array_t<double, py::array::c_style>>(a);
  for (int i = 0; i < P; ++i)
    if (!(std::fabs(arr.data()[i]) <= 131072.0))
      throw std::invalid_argument(std::string(what) + ": offsets must be finite, |x| <= 2^17");
  return arr;
}

// The checks both bindings share; returns the image's LbpDtype.
int checked_image(const py::array& image, int P, double max_abs) {
  const int dtype = dtype_code(image);
  if (dtype < 0)
    throw std::invalid_argument("image: expected a uint8, uint16, float32 or float64 array");
  if (!(image.flags() & py::array::c_style))
    throw std::invalid_argument("image: expected a C-contiguous array");
  if (image.ndim() != 2) throw std::invalid_argument("image: expected a 2-D array");
  if (image.size() == 0) throw std::invalid_argument("image: empty array");
  if (P < 1 || P > kLbpMaxP)
    throw std::invalid_argument("P must be in [1, " + std::to_string(kLbpMaxP) + "]");
  if (!(max_abs >= 0.0)) throw std::invalid_argument("max_abs must be >= 0");
  return dtype;
}

// Kernel arguments of a checked image (out, hist, mask, scratch left to the caller).
LbpArgs args_of(const py::array& image, int dtype, int P, const double* rp, const double* cp,
                int method, double max_abs) {
  LbpArgs a{};
  a.image = image.data();
  a.dtype = dtype;
  a.rows = image.shape(0);
  a.cols = image.shape(1);
  a.P = P;
  a.method = method;
  a.rp = rp;
  a.cp = cp;
  a.max_abs = max_abs;
  a.pad = lbp_pad(a.cp, P, a.cols);
  a.hlen = lbp_hlen(a.cols);
  a.stride = lbp_stride(a.cols, a.pad);
  return a;
}

// (codes, ok): ok is false when the image has NaN, Inf or |values| > max_abs (then the
// codes are not computed).
// With `out` (a writeable C-contiguous float64 (rows, cols) array that does not overlap
// the image), the codes are written there; scratch comes from the thread's reusable buffer.
std::tuple<py::array_t<double>, bool> lbp(const py::array& image, int P, const py::array& rp,
                                          const py::array& cp, int method, double max_abs,
                                          const std::string& target, const py::object& out_obj) {
  const int dtype = checked_image(image, P, max_abs);
  if (method < kLbpDefault || method > kLbpVar)
    throw std::invalid_argument(
        "method must be 0 (default), 1 (ror), 2 (uniform), "
        "3 (nri_uniform) or 4 (var)");
  auto r = offsets(rp, P, "rp");
  auto c = offsets(cp, P, "cp");
  const KernelTable* t = table_by_name(target);
  const ptrdiff_t rows = image.shape(0), cols = image.shape(1);
  py::array_t<double> out;
  if (out_obj.is_none()) {
    out = py::array_t<double>({rows, cols});
  } else {
    if (!py::isinstance<py::array_t<double>>(out_obj))
      throw std::invalid_argument("out: expected a float64 array");
    out = py::reinterpret_borrow<py::array_t<double>>(out_obj);
    if (out.dtype().kind() != 'f' || out.itemsize() != 8 || !(out.flags() & py::array::c_style) ||
        !out.writeable() || out.ndim() != 2 || out.shape(0) != rows || out.shape(1) != cols)
      throw std::invalid_argument(
          "out: expected a writeable C-contiguous float64 (rows, cols) array");
    const char* o0 = reinterpret_cast<const char*>(out.data());
    const char* i0 = reinterpret_cast<const char*>(image.data());
    if (o0 < i0 + image.nbytes() && i0 < o0 + out.nbytes())
      throw std::invalid_argument("out: overlaps the image");
  }
  LbpArgs a = args_of(image, dtype, P, r.data(), c.data(), method, max_abs);
  a.out = out.mutable_data();
  bool ok;
  {
    py::gil_scoped_release release;
    // Uninitialised: the kernel writes every scratch cell it reads.
    ThreadScratch sc({lbp_scratch(cols, P, a.pad) * sizeof(double)});
    a.scratch = sc.part<double>(0);
    ok = t->lbp(a);
  }
  return {out, ok};
}

// Histogram of the integer codes of `method` (not var) over the pixels where mask != 0
// (all pixels if mask is None), without a codes array: (counts uint32 (nbins,), ok), ok
// as for lbp().  nbins: P + 2 (uniform), P (P - 1) + 3 (nri_uniform), 2^P (default, ror;
// P <= 16).
std::tuple<py::array_t<uint32_t>, bool> lbp_histogram(const py::array& image, int P,
                                                      const py::array& rp, const py::array& cp,
                                                      int method, const py::object& mask,
                                                      double max_abs, const std::string& target) {
  const int dtype = checked_image(image, P, max_abs);
  int nbins;
  if (method == kLbpUniform) {
    nbins = P + 2;
  } else if (method == kLbpNriUniform) {
    nbins = P * (P - 1) + 3;
  } else if ((method == kLbpDefault || method == kLbpRor) && P <= 16) {
    nbins = 1 << P;
  } else {
    throw std::invalid_argument("method: uniform, nri_uniform, or default / ror with P <= 16");
  }
  auto r = offsets(rp, P, "rp");
  auto c = offsets(cp, P, "cp");
  const KernelTable* t = table_by_name(target);
  const ptrdiff_t rows = image.shape(0), cols = image.shape(1);
  py::array_t<uint8_t, py::array::c_style> keep;
  const uint8_t* m = nullptr;
  if (!mask.is_none()) {
    if (!py::isinstance<py::array>(mask))
      throw std::invalid_argument("mask: expected a uint8 array");
    const py::array ma = py::reinterpret_borrow<py::array>(mask);
    if (ma.dtype().kind() != 'u' || ma.itemsize() != 1 || !(ma.flags() & py::array::c_style) ||
        ma.ndim() != 2 || ma.shape(0) != rows || ma.shape(1) != cols)
      throw std::invalid_argument("mask: expected a C-contiguous uint8 array of the image's shape");
    keep = py::reinterpret_borrow<py::array_t<uint8_t, py::array::c_style>>(ma);
    m = keep.data();
  }
  py::array_t<uint32_t> hist(nbins);
  uint32_t* h = hist.mutable_data();
  LbpArgs a = args_of(image, dtype, P, r.data(), c.data(), method, max_abs);
  a.out = nullptr;
  a.mask = m;
  a.nbins = nbins;
  bool ok;
  {
    py::gil_scoped_release release;
    ThreadScratch sc({lbp_scratch(cols, P, a.pad) * sizeof(double),
                      2 * static_cast<size_t>(nbins) * sizeof(uint32_t)});
    a.scratch = sc.part<double>(0);
    a.hist = sc.part<uint32_t>(1);
    for (int k = 0; k < 2 * nbins; ++k) a.hist[k] = 0;
    ok = t->lbp(a);
    for (int k = 0; k < nbins; ++k) h[k] = a.hist[k] + a.hist[nbins + k];
  }
  return {hist, ok};
}

}  // namespace

void register_lbp(py::module_& m) {
  using namespace py::literals;
  m.def("lbp", &lbp, "image"_a, "P"_a, "rp"_a, "cp"_a, "method"_a, "max_abs"_a, "target"_a = "",
        "out"_a = py::none(),
        "Local binary patterns (unchecked offsets: see medimg_edge.features.lbp).");
  m.def("lbp_histogram", &lbp_histogram, "image"_a, "P"_a, "rp"_a, "cp"_a, "method"_a, "mask"_a,
        "max_abs"_a, "target"_a = "",
        "Histogram of the integer LBP codes over the mask, without a codes array.");
}

}  // namespace medimg::bind
