// medimg_edge._core: the private extension module.  One register_<area>.cpp per area.
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "common.hpp"

namespace py = pybind11;

namespace medimg::bind {

namespace {
// The per-thread scratch buffer (see ThreadScratch in common.hpp).
struct ScratchBuffer {
  unsigned char* p = nullptr;
  size_t capacity = 0;
  ~ScratchBuffer() { std::free(p); }
};
thread_local ScratchBuffer t_scratch;
}  // namespace

unsigned char* thread_scratch(size_t bytes) {
  ScratchBuffer& b = t_scratch;
  if (bytes <= b.capacity && b.p != nullptr) return b.p;
  // Grow by at least half again, so a thread whose images grow slowly does not reallocate
  // on every call.
  size_t want = bytes > b.capacity + b.capacity / 2 ? bytes : b.capacity + b.capacity / 2;
  want = (want + 4095) / 4096 * 4096;
  std::free(b.p);
  b.p = nullptr;
  b.capacity = 0;
  void* p = std::aligned_alloc(64, want);
  if (p == nullptr) throw std::bad_alloc();
  b.p = static_cast<unsigned char*>(p);
  b.capacity = want;
  return b.p;
}

void release_thread_scratch() {
  std::free(t_scratch.p);
  t_scratch.p = nullptr;
  t_scratch.capacity = 0;
}

size_t thread_scratch_capacity() { return t_scratch.capacity; }

}  // namespace medimg::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "medimg-edge private C++ core (SIMD kernels). Use the public medimg_edge API.";
  m.def(
      "compiled_targets",
      [] {
        std::vector<std::string> names;
        for (const medimg::KernelTable* t : medimg::compiled_tables()) names.emplace_back(t->name);
        return names;
      },
      "SIMD targets compiled into this build, weakest first.");
  m.def(
      "supported_targets",
      [] {
        std::vector<std::string> names;
        for (const medimg::KernelTable* t : medimg::compiled_tables())
          if (medimg::cpu_supports(t->name)) names.emplace_back(t->name);
        return names;
      },
      "Compiled SIMD targets this CPU can run, weakest first.");
  m.def(
      "active_target", [] { return std::string(medimg::active_table()->name); },
      "The SIMD target kernels use by default.");
  m.def("set_target_cap", &medimg::set_target_cap, py::arg("name"),
        "Cap the default SIMD target ('' removes the cap).");
  m.def("target_cap", &medimg::target_cap, "The current cap ('' if none).");
  m.attr("compiler") =
#if defined(__clang__)
      std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
      std::string("gcc ") + __VERSION__;
#else
      std::string("unknown");
#endif
  m.def("release_thread_scratch", &medimg::bind::release_thread_scratch,
        "Free the calling thread's reusable kernel scratch buffer (it grows back on demand).");
  m.def("thread_scratch_capacity", &medimg::bind::thread_scratch_capacity,
        "Bytes held by the calling thread's reusable kernel scratch buffer.");
  medimg::bind::register_denoise(m);
  medimg::bind::register_validation(m);
  medimg::bind::register_glcm(m);
  medimg::bind::register_lbp(m);
  medimg::bind::register_stats(m);
  medimg::bind::register_runtime(m);
  medimg::bind::register_quality(m);
}
