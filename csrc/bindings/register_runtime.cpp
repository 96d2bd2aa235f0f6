// Bindings of the inference runtime (src/medimg_edge/runtime/_model.py, _quant.py).
#include <tuple>

#include <pybind11/stl.h>

#include "common.hpp"

namespace medimg::bind {

namespace {

// Quantises x (float32, C-contiguous, interleaved channels = len(a)) into `out` (int8,
// uint8 or float32, C-contiguous, same number of elements) with q = x * a[c] + b[c],
// rounded half to even and saturated for integer outputs; returns (finite, min, max) of x.
// `out` is undefined when x is not finite.
std::tuple<bool, float, float> quantize_affine(const py::array& x, const py::array& a,
                                               const py::array& b, py::array& out,
                                               const std::string& target) {
  auto in = checked(x, -1, "x");
  auto va = checked(a, 1, "a");
  auto vb = checked(b, 1, "b");
  const ptrdiff_t channels = va.size();
  if (vb.size() != channels || channels > kQuantMaxChannels)
    throw std::invalid_argument("a and b must have the same length, at most " +
                                std::to_string(kQuantMaxChannels));
  if (in.size() % channels != 0)
    throw std::invalid_argument("x.size must be a multiple of the number of channels");
  if (!(out.flags() & py::array::c_style) || !out.writeable())
    throw std::invalid_argument("out must be a writeable C-contiguous array");
  if (out.size() != in.size()) throw std::invalid_argument("out must have x.size elements");
  int out_type;
  if (py::isinstance<py::array_t<int8_t>>(out) && out.itemsize() == 1 && out.dtype().kind() == 'i')
    out_type = kQuantInt8;
  else if (py::isinstance<py::array_t<uint8_t>>(out) && out.itemsize() == 1 &&
           out.dtype().kind() == 'u')
    out_type = kQuantUint8;
  else if (out.dtype().kind() == 'f' && out.itemsize() == 4)
    out_type = kQuantFloat32;
  else
    throw std::invalid_argument("out must be int8, uint8 or float32");
  const KernelTable* t = table_by_name(target);
  const float* src = in.data();
  const ptrdiff_t n = in.size();
  void* dst = out.mutable_data();
  float mn = 0.0f, mx = 0.0f;
  bool finite;
  {
    ReleaseGilIfLarge release(n);  // a model input is often only 128 x 128
    finite = t->quantize_affine(src, n, static_cast<int>(channels), va.data(), vb.data(), out_type,
                                dst, &mn, &mx);
  }
  return {finite, mn, mx};
}

}  // namespace

void register_runtime(py::module_& m) {
  using namespace py::literals;
  m.def("quantize_affine", &quantize_affine, "x"_a, "a"_a, "b"_a, "out"_a, "target"_a = "",
        "Quantise x into out (q = x * a[c] + b[c], round half even, saturate); returns "
        "(finite, min, max) of x.");
}

}  // namespace medimg::bind
