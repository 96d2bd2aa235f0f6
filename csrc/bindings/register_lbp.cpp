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

// (codes, ok): ok is false when the image has NaN, Inf or |values| > max_abs (then the
// codes are not computed).
// With `out` (a writeable C-contiguous float64 (rows, cols) array that does not overlap
// the image), the codes are written there; scratch comes from the thread's reusable buffer.
std::tuple<py::array_t<double>, bool> lbp(const py::array& image, int P, const py::array& rp,
                                          const py::array& cp, int method, double max_abs,
                                          const std::string& target, const py::object& out_obj) {
  const int dtype = dtype_code(image);
  if (dtype < 0)
    throw std::invalid_argument("image: expected a uint8, uint16, float32 or float64 array");
  if (!(image.flags() & py::array::c_style))
    throw std::invalid_argument("image: expected a C-contiguous array");
  if (image.ndim() != 2) throw std::invalid_argument("image: expected a 2-D array");
  if (image.size() == 0) throw std::invalid_argument("image: empty array");
  if (P < 1 || P > kLbpMaxP)
    throw std::invalid_argument("P must be in [1, " + std::to_string(kLbpMaxP) + "]");
  if (method < kLbpDefault || method > kLbpVar)
    throw std::invalid_argument(
        "method must be 0 (default), 1 (ror), 2 (uniform), "
        "3 (nri_uniform) or 4 (var)");
  if (!(max_abs >= 0.0)) throw std::invalid_argument("max_abs must be >= 0");
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
  LbpArgs a{};
  a.image = image.data();
  a.dtype = dtype;
  a.rows = rows;
  a.cols = cols;
  a.P = P;
  a.method = method;
  a.rp = r.data();
  a.cp = c.data();
  a.max_abs = max_abs;
  a.pad = lbp_pad(a.cp, P, cols);
  a.hlen = lbp_hlen(cols);
  a.stride = lbp_stride(cols, a.pad);
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

}  // namespace

void register_lbp(py::module_& m) {
  using namespace py::literals;
  m.def("lbp", &lbp, "image"_a, "P"_a, "rp"_a, "cp"_a, "method"_a, "max_abs"_a, "target"_a = "",
        "out"_a = py::none(),
        "Local binary patterns (unchecked offsets: see medimg_edge.features.lbp).");
}

}  // namespace medimg::bind
