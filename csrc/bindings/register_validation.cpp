// Bindings used by input validation (src/medimg_edge/_validation.py).
#include <tuple>

#include <pybind11/stl.h>

#include "common.hpp"

namespace medimg::bind {

namespace {

// (all finite, min, max) of a float32 C-contiguous array in one SIMD pass.
std::tuple<bool, float, float> scan(const py::array& image, const std::string& target) {
  auto in = checked(image, -1, "image");
  const KernelTable* t = table_by_name(target);
  const float* src = in.data();
  const ptrdiff_t n = in.size();
  float mn = 0.0f, mx = 0.0f;
  bool finite;
  {
    py::gil_scoped_release release;
    finite = t->scan(src, n, &mn, &mx);
  }
  return {finite, mn, mx};
}

// out[...] = float32(image) for a C-contiguous uint8 or uint16 image into a C-contiguous
// float32 array of the same size (exact), with the GIL released: numpy.copyto holds it
// for these casts, which serialises threads that each convert a frame.  Returns False
// (nothing written) for any other dtype or layout.
bool to_float32(const py::array& image, const py::array& out, const std::string& target) {
  if (!py::isinstance<py::array_t<float>>(out) || out.dtype().kind() != 'f' ||
      out.itemsize() != 4 || !(out.flags() & py::array::c_style) || !out.writeable())
    throw std::invalid_argument("out: expected a writeable C-contiguous float32 array");
  if (out.size() != image.size()) throw std::invalid_argument("out: size differs from image's");
  const char order = image.dtype().byteorder();  // '=' native, '|' single byte
  if (!(image.flags() & py::array::c_style) || (order != '=' && order != '|')) return false;
  const char kind = image.dtype().kind();
  const ptrdiff_t size = image.itemsize(), n = image.size();
  float* dst = static_cast<float*>(py::reinterpret_borrow<py::array>(out).mutable_data());
  const void* src = image.data();
  if (src == static_cast<const void*>(dst)) throw std::invalid_argument("out: aliases image");
  if (kind != 'u' || (size != 1 && size != 2)) return false;
  const KernelTable* t = table_by_name(target);
  py::gil_scoped_release release;
  t->widen(src, static_cast<int>(size), n, dst);
  return true;
}

}  // namespace

void register_validation(py::module_& m) {
  using namespace py::literals;
  m.def("scan", &scan, "image"_a, "target"_a = "",
        "(all finite, min, max) of a float32 C-contiguous array.");
  m.def("to_float32", &to_float32, "image"_a, "out"_a, "target"_a = "",
        "out[...] = float32(image) for uint8/uint16, the GIL released; False if not handled.");
}

}  // namespace medimg::bind
