// Helpers shared by the register_<area>.cpp binding files.  The Python wrappers validate
// inputs first (src/medimg_edge/_validation.py); these checks are a second line of defence
// so that C++ never sees an unchecked array even when _core is called directly.
#pragma once

#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

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

// The output array of a kernel: `out` if it is not None (checked: a writeable C-contiguous
// float32 array of exactly `shape`; it may be the input itself, every kernel here reads its
// whole input before writing), else a new array.
inline py::array_t<float> output_for(const py::object& out, const py::array& like,
                                     const char* what = "out") {
  if (out.is_none()) {
    std::vector<ptrdiff_t> shape(like.shape(), like.shape() + like.ndim());
    return py::array_t<float>(shape);
  }
  if (!py::isinstance<py::array>(out))
    throw std::invalid_argument(std::string(what) + ": expected a NumPy array or None");
  const py::array a = py::reinterpret_borrow<py::array>(out);
  if (!py::isinstance<py::array_t<float>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 4 ||
      !(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(std::string(what) +
                                ": expected a writeable C-contiguous float32 array");
  bool same = a.ndim() == like.ndim();
  for (ptrdiff_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == like.shape(i);
  if (!same) throw std::invalid_argument(std::string(what) + ": shape differs from the image's");
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

// ---- per-thread reusable scratch ----------------------------------------------------------
// Kernels get their scratch memory from a buffer owned by the calling thread and reused by
// its next call, so a steady stream of calls does not map (and page-fault in) fresh pages
// for every call, even when other code allocates and frees memory in between.  The buffer
// grows to the largest scratch the thread has needed and is kept until the thread exits
// (or release_thread_scratch()).  Not reentrant: one binding call per thread at a time,
// which holds because bindings never call back into Python while they use it.
unsigned char* thread_scratch(size_t bytes);
void release_thread_scratch();
size_t thread_scratch_capacity();

// The calling thread's scratch buffer carved into 64-byte aligned parts of the given sizes
// in bytes:  ThreadScratch sc({n * sizeof(float), m * sizeof(uint32_t)});
//            float* f = sc.part<float>(0); uint32_t* u = sc.part<uint32_t>(1);
class ThreadScratch {
 public:
  static constexpr int kMaxParts = 8;
  ThreadScratch(std::initializer_list<size_t> bytes) {
    if (bytes.size() > kMaxParts) throw std::logic_error("ThreadScratch: too many parts");
    size_t total = 0;
    for (size_t b : bytes) {
      offsets_[n_++] = total;
      total += (b + 63) / 64 * 64;
    }
    base_ = thread_scratch(total);
  }
  template <typename T>
  T* part(int i) const {
    return reinterpret_cast<T*>(base_ + offsets_[i]);
  }

 private:
  size_t offsets_[kMaxParts] = {};
  int n_ = 0;
  unsigned char* base_ = nullptr;
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
void register_quality(py::module_& m);

}  // namespace medimg::bind
