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

}  // namespace

void register_validation(py::module_& m) {
  using namespace py::literals;
  m.def("scan", &scan, "image"_a, "target"_a = "",
        "(all finite, min, max) of a float32 C-contiguous array.");
}

}  // namespace medimg::bind
