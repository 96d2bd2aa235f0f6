// Helpers shared by the register_<area>.cpp binding files.  The Python wrappers validate
// inputs first (src/medimg_edge/_validation.py); these checks are a second line of defence
// so that C++ never sees an unchecked array even when _core is called directly.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "../dispatch.hpp"

namespace medimg::bind {

namespace py = pybind11;
using farray = py::array_t<float, py::array::c_style>;

// Returns the input as a C-contiguous float32 array of `ndim` dims (ndim < 0: any),
// refusing (not converting) anything else.
inline py::array_t<float> checked(const py::array& a, int ndim, const char* what) {
  if (!py::isinstance<py::array_t<float>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 4)
    throw std::invalid_argument(std::string(what) + ": expected a float32 array");
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(what) + ": expected a C-contiguous array");
  if (ndim >= 0 && a.ndim() != ndim)
    throw std::invalid_argument(std::string(what) + ": expected a " + std::to_string(ndim) +
                                "-D array");
  if (a.size() == 0) throw std::invalid_argument(std::string(what) + ": empty array");
  return py::reinterpret_borrow<py::array_t<float>>(a);
}

// Releases the GIL for the scope when a kernel has at least kNoGilMin elements to do.
// Releasing is a hand-off: a thread waiting for the GIL is woken (a futex wake, an
// inter-processor interrupt on a VM), and this thread waits for it again afterwards, which
// costs more than a few-microsecond kernel saves by running in parallel.
constexpr ptrdiff_t kNoGilMin = ptrdiff_t(1) << 16;
class ReleaseGilIfLarge {
 public:
  explicit ReleaseGilIfLarge(ptrdiff_t n) {
    if (n >= kNoGilMin) release_.emplace();
  }

 private:
  std::optional<py::gil_scoped_release> release_;
};

inline void check_window(int window, ptrdiff_t rows, ptrdiff_t cols) {
  if (window < 3 || window > kMaxWindow || window % 2 == 0)
    throw std::invalid_argument("window must be odd and in [3, " + std::to_string(kMaxWindow) +
                                "]");
  (void)rows;
  (void)cols;
}

void register_denoise(py::module_& m);
void register_validation(py::module_& m);
void register_glcm(py::module_& m);
void register_lbp(py::module_& m);
void register_stats(py::module_& m);
void register_runtime(py::module_& m);

}  // namespace medimg::bind
